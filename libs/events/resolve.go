package events

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
)

// This file holds Avro schema resolution ("Schema Resolution" in the Avro
// specification) over decoded values: goavro decodes the bytes with the
// writer's schema, and a projection compiled once per (writer, reader) pair
// turns the writer-shaped value into the value the reader schema describes.
// Reader fields missing in the writer take the reader's default, writer fields
// unknown to the reader are dropped, enum symbols and union branches are
// matched by name, numbers are promoted. Values use goavro's native form
// (records map[string]any, unions nil or map[string]any{branch: value},
// timestamp-micros time.Time).
//
// A nil projection is the identity: when writer and reader agree on a whole
// subtree, its value is used as goavro decoded it, without a copy.

type projectFn func(v any) (any, error)

type projector struct {
	// records holds the projections of (writer, reader) record pairs; a
	// pointer to the slot lets recursive records refer to themselves.
	records map[[2]*avroschema.Schema]*projectFn
}

func newProjector() *projector {
	return &projector{records: map[[2]*avroschema.Schema]*projectFn{}}
}

// compile returns the projection of w-shaped values to r; nil is the identity.
func (p *projector) compile(w, r *avroschema.Schema, path string) (projectFn, error) {
	if w.Kind == avroschema.Union {
		return p.writerUnion(w, r, path)
	}
	if r.Kind == avroschema.Union {
		fn, _, err := p.readerUnion(w, r, path)
		return fn, err
	}
	if w.Kind != r.Kind {
		return promote(w, r, path)
	}
	switch w.Kind {
	case avroschema.Long:
		return timeUnits(w, r, path)
	case avroschema.Fixed:
		if !avroschema.NamesMatch(r, w) || r.Size != w.Size {
			return nil, fmt.Errorf("%s: fixed %s cannot be read as %s", path, w.Name, r.Name)
		}
		return nil, nil
	case avroschema.Enum:
		return enum(w, r, path)
	case avroschema.Array:
		item, err := p.compile(w.Items, r.Items, path+"[]")
		if err != nil || item == nil {
			return nil, err
		}
		return func(v any) (any, error) {
			in, ok := v.([]any)
			if !ok {
				return nil, fmt.Errorf("%s: array is %T", path, v)
			}
			out := make([]any, len(in))
			for i, x := range in {
				if out[i], err = item(x); err != nil {
					return nil, err
				}
			}
			return out, nil
		}, nil
	case avroschema.Map:
		value, err := p.compile(w.Values, r.Values, path+"{}")
		if err != nil || value == nil {
			return nil, err
		}
		return func(v any) (any, error) {
			in, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%s: map is %T", path, v)
			}
			out := make(map[string]any, len(in))
			for k, x := range in {
				if out[k], err = value(x); err != nil {
					return nil, err
				}
			}
			return out, nil
		}, nil
	case avroschema.Record:
		return p.record(w, r, path)
	}
	return nil, nil // null, boolean, int, float, double, bytes, string
}

// readerUnion compiles the projection of w-shaped values, w not a union,
// into the reader union r: the branch r selects for w, wrapped as a union
// value. same reports whether a branch of a writer union shaped as w
// (goavro's map{name: value}, or nil for null) is already that reader
// value: the branch has goavro's name for w and reads w unchanged.
func (p *projector) readerUnion(w, r *avroschema.Schema, path string) (fn projectFn, same bool, err error) {
	i := avroschema.SelectBranch(r, w)
	if i < 0 {
		return nil, false, fmt.Errorf("%s: reader union has no branch for %s", path, w.TypeName())
	}
	rb := r.Branches[i]
	fn, err = p.compile(w, rb, path)
	if err != nil {
		return nil, false, err
	}
	if rb.Kind == avroschema.Null {
		return fn, w.Kind == avroschema.Null && fn == nil, nil
	}
	name := rb.TypeName()
	same = fn == nil && w.Kind != avroschema.Null && goavroBranchName(w) == name
	inner := fn
	return func(v any) (any, error) {
		v, err := apply(inner, v)
		if err != nil {
			return nil, err
		}
		return map[string]any{name: v}, nil
	}, same, nil
}

func apply(fn projectFn, v any) (any, error) {
	if fn == nil {
		return v, nil
	}
	return fn(v)
}

// goavroBranchName is the key goavro gives a union value of branch s: the
// type name, with the logical type appended for the ones goavro decodes.
func goavroBranchName(s *avroschema.Schema) string {
	switch s.Kind.String() + "." + s.LogicalType {
	case "long.timestamp-millis", "long.timestamp-micros", "int.time-millis", "long.time-micros", "int.date":
		return s.Kind.String() + "." + s.LogicalType
	}
	return s.TypeName()
}

func (p *projector) writerUnion(w, r *avroschema.Schema, path string) (projectFn, error) {
	type branch struct {
		fn  projectFn
		err error // set when data of this branch cannot be read as r
	}
	var null *branch
	byName := make(map[string]branch, len(w.Branches))
	// identity: into a reader union, every writer branch reads as the
	// reader branch of the same name unchanged, so goavro's value is the
	// reader's and needs no copy.
	identity := r.Kind == avroschema.Union
	for _, wb := range w.Branches {
		var fn projectFn
		var err error
		if r.Kind == avroschema.Union {
			var same bool
			fn, same, err = p.readerUnion(wb, r, path)
			identity = identity && same && err == nil
		} else {
			fn, err = p.compile(wb, r, path)
		}
		if err != nil {
			// Only data that uses this branch is unreadable.
			err = fmt.Errorf("%s: writer branch %s: %w", path, wb.TypeName(), err)
		}
		if wb.Kind == avroschema.Null {
			null = &branch{fn, err}
			continue
		}
		byName[goavroBranchName(wb)] = branch{fn, err}
	}
	if identity {
		return nil, nil
	}
	return func(v any) (any, error) {
		if v == nil {
			if null == nil {
				return nil, fmt.Errorf("%s: null for a union without null", path)
			}
			if null.err != nil {
				return nil, null.err
			}
			return apply(null.fn, nil)
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return nil, fmt.Errorf("%s: union value is %T", path, v)
		}
		for name, x := range m {
			b, ok := byName[name]
			if !ok {
				return nil, fmt.Errorf("%s: union branch %s unknown", path, name)
			}
			if b.err != nil {
				return nil, b.err
			}
			return apply(b.fn, x)
		}
		return nil, nil // unreachable: m has one entry
	}, nil
}

// timeUnits converts between the native forms of longs whose logical types
// differ; the Avro value, the long itself, is what resolution keeps.
func timeUnits(w, r *avroschema.Schema, path string) (projectFn, error) {
	if w.LogicalType == r.LogicalType {
		return nil, nil
	}
	toLong := map[string]func(time.Time) int64{
		"":                 nil,
		"timestamp-micros": time.Time.UnixMicro,
		"timestamp-millis": time.Time.UnixMilli,
	}
	fromLong := map[string]func(int64) any{
		"":                 func(n int64) any { return n },
		"timestamp-micros": func(n int64) any { return time.UnixMicro(n).UTC() },
		"timestamp-millis": func(n int64) any { return time.UnixMilli(n).UTC() },
	}
	in, okW := toLong[w.LogicalType]
	out, okR := fromLong[r.LogicalType]
	if !okW || !okR {
		return nil, fmt.Errorf("%s: long %s cannot be read as long %s", path, w.LogicalType, r.LogicalType)
	}
	return func(v any) (any, error) {
		switch x := v.(type) {
		case int64:
			return out(x), nil
		case time.Time:
			return out(in(x)), nil
		}
		return nil, fmt.Errorf("%s: long is %T", path, v)
	}, nil
}

func promote(w, r *avroschema.Schema, path string) (projectFn, error) {
	if !avroschema.Promotable(w.Kind, r.Kind) {
		return nil, fmt.Errorf("%s: %s cannot be read as %s", path, w.TypeName(), r.TypeName())
	}
	return func(v any) (any, error) {
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

func enum(w, r *avroschema.Schema, path string) (projectFn, error) {
	if !avroschema.NamesMatch(r, w) {
		return nil, fmt.Errorf("%s: enum %s cannot be read as %s", path, w.Name, r.Name)
	}
	// symbols maps a writer symbol to the reader's; a symbol unknown to a
	// reader without default is absent.
	symbols := make(map[string]string, len(w.Symbols))
	same := true
	for _, s := range w.Symbols {
		switch {
		case r.Symbol(s) >= 0:
			symbols[s] = s
		case r.HasEnumDefault:
			symbols[s], same = r.EnumDefault, false
		default:
			same = false
		}
	}
	if same {
		return nil, nil
	}
	return func(v any) (any, error) {
		s, _ := v.(string)
		out, ok := symbols[s]
		if !ok {
			return nil, fmt.Errorf("%s: symbol %q unknown to the reader", path, s)
		}
		return out, nil
	}, nil
}

// fieldStep fills one reader field: from a writer field, or a default.
type fieldStep struct {
	name    string    // reader field name
	from    string    // writer field name; "" for a default
	project projectFn // applied to the writer field's value
	value   any       // the default, when from is ""
}

func (p *projector) record(w, r *avroschema.Schema, path string) (projectFn, error) {
	if r.Kind != avroschema.Record || !avroschema.NamesMatch(r, w) {
		return nil, fmt.Errorf("%s: record %s cannot be read as %s", path, w.Name, r.TypeName())
	}
	key := [2]*avroschema.Schema{w, r}
	if slot, ok := p.records[key]; ok {
		return func(v any) (any, error) { return (*slot)(v) }, nil
	}
	slot := new(projectFn)
	p.records[key] = slot

	identity := len(w.Fields) == len(r.Fields)
	steps := make([]fieldStep, 0, len(r.Fields))
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
			steps = append(steps, fieldStep{name: rf.Name, value: v})
			identity = false
			continue
		}
		fn, err := p.compile(wf.Type, rf.Type, fp)
		if err != nil {
			return nil, err
		}
		identity = identity && fn == nil && wf.Name == rf.Name
		steps = append(steps, fieldStep{name: rf.Name, from: wf.Name, project: fn})
	}
	if identity {
		// A recursive reference compiled meanwhile calls through the slot.
		*slot = func(v any) (any, error) { return v, nil }
		return nil, nil
	}
	*slot = func(v any) (any, error) {
		in, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: record is %T", path, v)
		}
		out := make(map[string]any, len(steps))
		for _, st := range steps {
			if st.from == "" {
				out[st.name] = cloneNative(st.value)
				continue
			}
			x, err := apply(st.project, in[st.from])
			if err != nil {
				return nil, err
			}
			out[st.name] = x
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
			return time.UnixMicro(n).UTC(), nil
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
