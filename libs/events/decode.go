package events

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
)

// This file holds a resolving Avro binary decoder: it reads data written
// with a writer schema and produces the value the reader schema describes
// (Avro "Schema Resolution"): reader fields missing in the writer take the
// reader's default, writer fields unknown to the reader are skipped, enum
// symbols and union branches are matched by name, numbers are promoted.
// Values use goavro's native form (records map[string]any, unions nil or
// map[string]any{branch type name: value}, timestamp-micros time.Time), so
// encoder and decoder share one representation.
//
// Every length and count read from the input is checked against the bytes
// that remain before anything is allocated, so hostile input cannot make the
// decoder allocate more than a small multiple of its size.

var errShort = errors.New("unexpected end of data")

type byteReader struct {
	b   []byte
	pos int
}

func (r *byteReader) remaining() int { return len(r.b) - r.pos }

func (r *byteReader) long() (int64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.pos >= len(r.b) {
			return 0, errShort
		}
		c := r.b[r.pos]
		r.pos++
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return int64(v>>1) ^ -int64(v&1), nil
		}
	}
	return 0, errors.New("varint longer than 10 bytes")
}

func (r *byteReader) int() (int32, error) {
	v, err := r.long()
	if err != nil {
		return 0, err
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("int %d out of range", v)
	}
	return int32(v), nil
}

func (r *byteReader) length() (int, error) {
	n, err := r.long()
	if err != nil {
		return 0, err
	}
	if n < 0 || n > int64(r.remaining()) {
		return 0, fmt.Errorf("length %d exceeds the %d bytes left", n, r.remaining())
	}
	return int(n), nil
}

func (r *byteReader) bytes() ([]byte, error) {
	n, err := r.length()
	if err != nil {
		return nil, err
	}
	b := r.b[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

func (r *byteReader) fixed(n int) ([]byte, error) {
	if n > r.remaining() {
		return nil, errShort
	}
	b := r.b[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

// blockCount reads an array or map block header. min is the smallest
// encoding of one item; counts that cannot fit in the remaining bytes are
// rejected.
func (r *byteReader) blockCount(min int) (int, error) {
	n, err := r.long()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		if n == math.MinInt64 {
			return 0, errors.New("invalid block count")
		}
		n = -n
		if _, err := r.long(); err != nil { // block size in bytes, not needed
			return 0, err
		}
	}
	limit := int64(r.remaining())
	if min > 0 {
		limit /= int64(min)
	}
	if n > limit {
		return 0, fmt.Errorf("block count %d exceeds what the %d bytes left can hold", n, r.remaining())
	}
	return int(n), nil
}

type decodeFn func(r *byteReader) (any, error)

// minSize is the smallest number of bytes a value of s occupies.
func minSize(s *avroschema.Schema) int {
	switch s.Kind {
	case avroschema.Null:
		return 0
	case avroschema.Float:
		return 4
	case avroschema.Double:
		return 8
	case avroschema.Fixed:
		return s.Size
	case avroschema.Record:
		n := 0
		for _, f := range s.Fields {
			n += minSize(f.Type)
		}
		return n
	default:
		return 1
	}
}

type compiler struct {
	// records caches decoders of (writer, reader) record pairs; a pointer
	// to the slot lets recursive records refer to themselves.
	records map[[2]*avroschema.Schema]*decodeFn
}

func newCompiler() *compiler {
	return &compiler{records: map[[2]*avroschema.Schema]*decodeFn{}}
}

// compile returns a decoder reading w-written data as r.
func (c *compiler) compile(w, r *avroschema.Schema, path string) (decodeFn, error) {
	if w.Kind == avroschema.Union {
		branches := make([]decodeFn, len(w.Branches))
		for i, wb := range w.Branches {
			fn, err := c.compile(wb, r, path)
			if err != nil {
				// Only data that uses this branch is unreadable.
				msg := fmt.Sprintf("%s: writer branch %s: %v", path, wb.TypeName(), err)
				fn = func(*byteReader) (any, error) { return nil, errors.New(msg) }
			}
			branches[i] = fn
		}
		return func(br *byteReader) (any, error) {
			i, err := br.long()
			if err != nil {
				return nil, err
			}
			if i < 0 || i >= int64(len(branches)) {
				return nil, fmt.Errorf("%s: union branch %d out of range", path, i)
			}
			return branches[i](br)
		}, nil
	}
	if r.Kind == avroschema.Union {
		i := avroschema.SelectBranch(r, w)
		if i < 0 {
			return nil, fmt.Errorf("%s: reader union has no branch for %s", path, w.TypeName())
		}
		rb := r.Branches[i]
		fn, err := c.compile(w, rb, path)
		if err != nil {
			return nil, err
		}
		if rb.Kind == avroschema.Null {
			return fn, nil
		}
		name := rb.TypeName()
		return func(br *byteReader) (any, error) {
			v, err := fn(br)
			if err != nil {
				return nil, err
			}
			return map[string]any{name: v}, nil
		}, nil
	}
	if w.Kind != r.Kind {
		return c.promote(w, r, path)
	}
	switch w.Kind {
	case avroschema.Null:
		return func(*byteReader) (any, error) { return nil, nil }, nil
	case avroschema.Boolean:
		return func(br *byteReader) (any, error) {
			b, err := br.fixed(1)
			if err != nil {
				return nil, err
			}
			if b[0] > 1 {
				return nil, fmt.Errorf("%s: invalid boolean byte %d", path, b[0])
			}
			return b[0] == 1, nil
		}, nil
	case avroschema.Int:
		return func(br *byteReader) (any, error) { return br.int() }, nil
	case avroschema.Long:
		if r.LogicalType == "timestamp-micros" {
			return func(br *byteReader) (any, error) {
				v, err := br.long()
				if err != nil {
					return nil, err
				}
				return microsToTime(v), nil
			}, nil
		}
		return func(br *byteReader) (any, error) { return br.long() }, nil
	case avroschema.Float:
		return func(br *byteReader) (any, error) {
			b, err := br.fixed(4)
			if err != nil {
				return nil, err
			}
			return math.Float32frombits(binary.LittleEndian.Uint32(b)), nil
		}, nil
	case avroschema.Double:
		return func(br *byteReader) (any, error) { return readDouble(br) }, nil
	case avroschema.String:
		return func(br *byteReader) (any, error) {
			b, err := br.bytes()
			return string(b), err
		}, nil
	case avroschema.Bytes:
		return func(br *byteReader) (any, error) {
			b, err := br.bytes()
			return append([]byte(nil), b...), err
		}, nil
	case avroschema.Fixed:
		if !avroschema.NamesMatch(r, w) || r.Size != w.Size {
			return nil, fmt.Errorf("%s: fixed %s cannot be read as %s", path, w.Name, r.Name)
		}
		size := w.Size
		return func(br *byteReader) (any, error) {
			b, err := br.fixed(size)
			return append([]byte(nil), b...), err
		}, nil
	case avroschema.Enum:
		return c.enum(w, r, path)
	case avroschema.Array:
		item, err := c.compile(w.Items, r.Items, path+"[]")
		if err != nil {
			return nil, err
		}
		min := minSize(w.Items)
		return func(br *byteReader) (any, error) {
			var out []any
			for {
				n, err := br.blockCount(min)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				if n == 0 {
					if out == nil {
						out = []any{}
					}
					return out, nil
				}
				if out == nil {
					out = make([]any, 0, n)
				}
				for range n {
					v, err := item(br)
					if err != nil {
						return nil, err
					}
					out = append(out, v)
				}
			}
		}, nil
	case avroschema.Map:
		value, err := c.compile(w.Values, r.Values, path+"{}")
		if err != nil {
			return nil, err
		}
		min := 1 + minSize(w.Values)
		return func(br *byteReader) (any, error) {
			out := map[string]any{}
			for {
				n, err := br.blockCount(min)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", path, err)
				}
				if n == 0 {
					return out, nil
				}
				for range n {
					k, err := br.bytes()
					if err != nil {
						return nil, err
					}
					v, err := value(br)
					if err != nil {
						return nil, err
					}
					out[string(k)] = v
				}
			}
		}, nil
	case avroschema.Record:
		return c.record(w, r, path)
	}
	return nil, fmt.Errorf("%s: unsupported type %s", path, w.Kind)
}

func microsToTime(v int64) time.Time {
	return time.Unix(v/1e6, (v%1e6)*1e3).UTC()
}

func readDouble(br *byteReader) (float64, error) {
	b, err := br.fixed(8)
	if err != nil {
		return 0, err
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
}

func (c *compiler) promote(w, r *avroschema.Schema, path string) (decodeFn, error) {
	if !avroschema.Promotable(w.Kind, r.Kind) {
		return nil, fmt.Errorf("%s: %s cannot be read as %s", path, w.TypeName(), r.TypeName())
	}
	read, err := c.compile(w, w, path)
	if err != nil {
		return nil, err
	}
	return func(br *byteReader) (any, error) {
		v, err := read(br)
		if err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case int32:
			switch r.Kind {
			case avroschema.Long:
				return int64(x), nil
			case avroschema.Float:
				return float32(x), nil
			default:
				return float64(x), nil
			}
		case int64:
			if r.Kind == avroschema.Float {
				return float32(x), nil
			}
			return float64(x), nil
		case float32:
			return float64(x), nil
		case string:
			return []byte(x), nil
		case []byte:
			return string(x), nil
		}
		return nil, fmt.Errorf("%s: cannot promote %T", path, v)
	}, nil
}

func (c *compiler) enum(w, r *avroschema.Schema, path string) (decodeFn, error) {
	if !avroschema.NamesMatch(r, w) {
		return nil, fmt.Errorf("%s: enum %s cannot be read as %s", path, w.Name, r.Name)
	}
	// symbols[i] is the reader symbol for writer index i; "" if unknown
	// to a reader without default.
	symbols := make([]string, len(w.Symbols))
	for i, s := range w.Symbols {
		switch {
		case r.Symbol(s) >= 0:
			symbols[i] = s
		case r.HasEnumDefault:
			symbols[i] = r.EnumDefault
		}
	}
	return func(br *byteReader) (any, error) {
		i, err := br.long()
		if err != nil {
			return nil, err
		}
		if i < 0 || i >= int64(len(symbols)) {
			return nil, fmt.Errorf("%s: enum index %d out of range", path, i)
		}
		if symbols[i] == "" {
			return nil, fmt.Errorf("%s: symbol %s unknown to the reader", path, w.Symbols[i])
		}
		return symbols[i], nil
	}, nil
}

type fieldStep struct {
	name string   // reader field name; "" to skip the writer field
	read decodeFn // decodes (or skips) the writer field
}

func (c *compiler) record(w, r *avroschema.Schema, path string) (decodeFn, error) {
	if r.Kind != avroschema.Record || !avroschema.NamesMatch(r, w) {
		return nil, fmt.Errorf("%s: record %s cannot be read as %s", path, w.Name, r.TypeName())
	}
	key := [2]*avroschema.Schema{w, r}
	if slot, ok := c.records[key]; ok {
		return func(br *byteReader) (any, error) { return (*slot)(br) }, nil
	}
	slot := new(decodeFn)
	c.records[key] = slot

	steps := make([]fieldStep, len(w.Fields))
	for i, wf := range w.Fields {
		// The writer field goes unread (skipped) unless a reader field takes it.
		fn, err := c.compile(wf.Type, wf.Type, path+"."+wf.Name)
		if err != nil {
			return nil, err
		}
		steps[i] = fieldStep{read: fn}
	}
	type fixedValue struct {
		name  string
		value any
	}
	var defaults []fixedValue
	for _, rf := range r.Fields {
		fp := join(path, rf.Name)
		wf := avroschema.WriterField(w, rf)
		if wf == nil {
			if !rf.HasDefault {
				return nil, fmt.Errorf("%s: missing in writer %s and no default", fp, w.Name)
			}
			v, err := defaultNative(rf.Type, rf.Default)
			if err != nil {
				return nil, fmt.Errorf("%s: default: %w", fp, err)
			}
			defaults = append(defaults, fixedValue{rf.Name, v})
			continue
		}
		fn, err := c.compile(wf.Type, rf.Type, fp)
		if err != nil {
			return nil, err
		}
		steps[wf.Index] = fieldStep{name: rf.Name, read: fn}
	}
	size := len(r.Fields)
	*slot = func(br *byteReader) (any, error) {
		out := make(map[string]any, size)
		for _, st := range steps {
			v, err := st.read(br)
			if err != nil {
				return nil, err
			}
			if st.name != "" {
				out[st.name] = v
			}
		}
		for _, d := range defaults {
			out[d.name] = cloneNative(d.value)
		}
		return out, nil
	}
	return *slot, nil
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// defaultNative converts a field default (JSON decoded with UseNumber) to the
// native form of schema s. A union default belongs to its first branch.
func defaultNative(s *avroschema.Schema, d any) (any, error) {
	if err := avroschema.CheckDefault(s, d); err != nil {
		return nil, err
	}
	switch s.Kind {
	case avroschema.Null:
		return nil, nil
	case avroschema.Union:
		b := s.Branches[0]
		v, err := defaultNative(b, d)
		if err != nil || b.Kind == avroschema.Null {
			return nil, err
		}
		return map[string]any{b.TypeName(): v}, nil
	case avroschema.Int:
		n, _ := d.(json.Number).Int64()
		return int32(n), nil
	case avroschema.Long:
		n, _ := d.(json.Number).Int64()
		if s.LogicalType == "timestamp-micros" {
			return microsToTime(n), nil
		}
		return n, nil
	case avroschema.Float:
		f, _ := d.(json.Number).Float64()
		return float32(f), nil
	case avroschema.Double:
		f, _ := d.(json.Number).Float64()
		return f, nil
	case avroschema.Bytes, avroschema.Fixed:
		// JSON defaults of bytes map code points 0-255 to bytes.
		var out []byte
		for _, r := range d.(string) {
			out = append(out, byte(r))
		}
		return out, nil
	case avroschema.Array:
		list := d.([]any)
		out := make([]any, len(list))
		for i, x := range list {
			v, err := defaultNative(s.Items, x)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case avroschema.Map:
		m := d.(map[string]any)
		out := make(map[string]any, len(m))
		for k, x := range m {
			v, err := defaultNative(s.Values, x)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	case avroschema.Record:
		m := d.(map[string]any)
		out := make(map[string]any, len(s.Fields))
		for _, f := range s.Fields {
			x, ok := m[f.Name]
			if !ok {
				x = f.Default
			}
			v, err := defaultNative(f.Type, x)
			if err != nil {
				return nil, err
			}
			out[f.Name] = v
		}
		return out, nil
	}
	return d, nil // boolean, string, enum
}

// cloneNative copies the maps and slices of a native value so that a
// default handed out by one decode cannot be changed through another.
func cloneNative(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = cloneNative(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneNative(e)
		}
		return out
	case []byte:
		return append([]byte(nil), x...)
	}
	return v
}
