package events

import (
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
)

// binder converts between the Go structs of this package and the native
// values of goavro, guided by the schema. Struct fields are matched to
// schema fields by their avro tag; the field lookup of each struct type is
// computed once.
type binder struct {
	fields   sync.Map // reflect.Type -> map[string][]int (avro field name -> field index path)
	payloads map[string]reflect.Type
}

var (
	timeType    = reflect.TypeFor[time.Time]()
	payloadType = reflect.TypeFor[Payload]()
)

func newBinder() *binder {
	b := &binder{payloads: map[string]reflect.Type{}}
	for _, p := range PayloadTypes() {
		t := reflect.TypeOf(p)
		b.payloads[t.Name()] = t
	}
	return b
}

func (b *binder) fieldsOf(t reflect.Type) map[string][]int {
	if m, ok := b.fields.Load(t); ok {
		return m.(map[string][]int)
	}
	m := map[string][]int{}
	for _, f := range reflect.VisibleFields(t) {
		if name := f.Tag.Get("avro"); name != "" && f.IsExported() {
			m[name] = f.Index
		}
	}
	b.fields.Store(t, m)
	return m
}

// toNative converts v to the native form of schema s for goavro.
func (b *binder) toNative(s *avroschema.Schema, v reflect.Value, path string) (any, error) {
	switch s.Kind {
	case avroschema.Union:
		return b.unionToNative(s, v, path)
	case avroschema.Record:
		if v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return nil, fmt.Errorf("%s: want a struct for record %s, have %s", path, s.ShortName(), v.Kind())
		}
		fields := b.fieldsOf(v.Type())
		out := make(map[string]any, len(s.Fields))
		for _, f := range s.Fields {
			idx, ok := fields[f.Name]
			if !ok {
				if !f.HasDefault {
					return nil, fmt.Errorf("%s: %s has no field for %s and the schema gives no default", path, v.Type(), f.Name)
				}
				d, err := defaultNative(f.Type, f.Default)
				if err != nil {
					return nil, err
				}
				out[f.Name] = d
				continue
			}
			n, err := b.toNative(f.Type, v.FieldByIndex(idx), join(path, f.Name))
			if err != nil {
				return nil, err
			}
			out[f.Name] = n
		}
		return out, nil
	case avroschema.Enum, avroschema.String:
		if v.Kind() != reflect.String {
			return nil, fmt.Errorf("%s: want a string, have %s", path, v.Type())
		}
		return v.String(), nil
	case avroschema.Bytes, avroschema.Fixed:
		return v.Bytes(), nil
	case avroschema.Boolean:
		return v.Bool(), nil
	case avroschema.Int:
		return int32(v.Int()), nil
	case avroschema.Long:
		if v.Type() == timeType {
			t := v.Interface().(time.Time)
			return t.Unix()*1e6 + int64(t.Nanosecond()/1e3), nil
		}
		return v.Int(), nil
	case avroschema.Float:
		return float32(v.Float()), nil
	case avroschema.Double:
		return v.Float(), nil
	case avroschema.Array:
		out := make([]any, v.Len())
		for i := range out {
			n, err := b.toNative(s.Items, v.Index(i), path)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case avroschema.Map:
		out := make(map[string]any, v.Len())
		it := v.MapRange()
		for it.Next() {
			n, err := b.toNative(s.Values, it.Value(), path)
			if err != nil {
				return nil, err
			}
			out[it.Key().String()] = n
		}
		return out, nil
	case avroschema.Null:
		return nil, nil
	}
	return nil, fmt.Errorf("%s: unsupported schema type %s", path, s.Kind)
}

func (b *binder) unionToNative(s *avroschema.Schema, v reflect.Value, path string) (any, error) {
	isNil := false
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		isNil = v.IsNil()
	}
	if isNil {
		for _, br := range s.Branches {
			if br.Kind == avroschema.Null {
				return nil, nil
			}
		}
		return nil, fmt.Errorf("%s: nil value for a union without null", path)
	}
	if v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		v = v.Elem()
	}
	var branch *avroschema.Schema
	if v.Kind() == reflect.Struct && v.Type() != timeType {
		// Record branches are matched by the Go type's name.
		for _, br := range s.Branches {
			if br.Kind == avroschema.Record && br.ShortName() == v.Type().Name() {
				branch = br
				break
			}
		}
	} else {
		for _, br := range s.Branches {
			if br.Kind != avroschema.Null {
				branch = br
				break
			}
		}
	}
	if branch == nil {
		return nil, fmt.Errorf("%s: no union branch for %s", path, v.Type())
	}
	n, err := b.toNative(branch, v, path)
	if err != nil {
		return nil, err
	}
	return map[string]any{branch.TypeName(): n}, nil
}

// fromNative stores native value n of schema s in dst.
func (b *binder) fromNative(s *avroschema.Schema, n any, dst reflect.Value, path string) error {
	if s.Kind == avroschema.Union {
		if n == nil {
			dst.SetZero()
			return nil
		}
		m, ok := n.(map[string]any)
		if !ok || len(m) != 1 {
			return fmt.Errorf("%s: malformed union value %T", path, n)
		}
		for name, v := range m {
			var branch *avroschema.Schema
			for _, br := range s.Branches {
				if br.TypeName() == name {
					branch = br
				}
			}
			if branch == nil {
				return fmt.Errorf("%s: unknown union branch %s", path, name)
			}
			switch {
			case dst.Type() == payloadType:
				t, ok := b.payloads[branch.ShortName()]
				if !ok {
					return fmt.Errorf("%s: no Go type for payload %s", path, branch.Name)
				}
				pv := reflect.New(t).Elem()
				if err := b.fromNative(branch, v, pv, path); err != nil {
					return err
				}
				dst.Set(pv)
				return nil
			case dst.Kind() == reflect.Pointer:
				pv := reflect.New(dst.Type().Elem())
				if err := b.fromNative(branch, v, pv.Elem(), path); err != nil {
					return err
				}
				dst.Set(pv)
				return nil
			default:
				return b.fromNative(branch, v, dst, path)
			}
		}
	}
	switch s.Kind {
	case avroschema.Record:
		m, ok := n.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want a record, have %T", path, n)
		}
		fields := b.fieldsOf(dst.Type())
		for _, f := range s.Fields {
			idx, ok := fields[f.Name]
			if !ok {
				continue // a reader field the Go type does not carry
			}
			fv := dst.FieldByIndex(idx)
			if err := b.fromNative(f.Type, m[f.Name], fv, join(path, f.Name)); err != nil {
				return err
			}
			if f.Type.Kind == avroschema.Map && fv.Len() == 0 {
				fv.SetZero() // an empty map outside a union reads as nil
			}
		}
		return nil
	case avroschema.Enum, avroschema.String:
		v, ok := n.(string)
		if !ok || dst.Kind() != reflect.String {
			return fmt.Errorf("%s: cannot store %T in %s", path, n, dst.Type())
		}
		dst.SetString(v)
	case avroschema.Bytes, avroschema.Fixed:
		v, ok := n.([]byte)
		if !ok || dst.Kind() != reflect.Slice {
			return fmt.Errorf("%s: cannot store %T in %s", path, n, dst.Type())
		}
		dst.SetBytes(v)
	case avroschema.Boolean:
		v, ok := n.(bool)
		if !ok || dst.Kind() != reflect.Bool {
			return fmt.Errorf("%s: cannot store %T in %s", path, n, dst.Type())
		}
		dst.SetBool(v)
	case avroschema.Int, avroschema.Long:
		switch v := n.(type) {
		case int32:
			dst.SetInt(int64(v))
		case int64:
			dst.SetInt(v)
		case time.Time:
			if dst.Type() != timeType {
				return fmt.Errorf("%s: cannot store time in %s", path, dst.Type())
			}
			dst.Set(reflect.ValueOf(v))
		default:
			return fmt.Errorf("%s: cannot store %T in %s", path, n, dst.Type())
		}
	case avroschema.Float, avroschema.Double:
		switch v := n.(type) {
		case float32:
			dst.SetFloat(float64(v))
		case float64:
			dst.SetFloat(v)
		default:
			return fmt.Errorf("%s: cannot store %T in %s", path, n, dst.Type())
		}
	case avroschema.Array:
		list, ok := n.([]any)
		if !ok || dst.Kind() != reflect.Slice {
			return fmt.Errorf("%s: cannot store %T in %s", path, n, dst.Type())
		}
		out := reflect.MakeSlice(dst.Type(), len(list), len(list))
		for i, x := range list {
			if err := b.fromNative(s.Items, x, out.Index(i), path); err != nil {
				return err
			}
		}
		dst.Set(out)
	case avroschema.Map:
		m, ok := n.(map[string]any)
		if !ok || dst.Kind() != reflect.Map {
			return fmt.Errorf("%s: cannot store %T in %s", path, n, dst.Type())
		}
		out := reflect.MakeMapWithSize(dst.Type(), len(m))
		ev := reflect.New(dst.Type().Elem()).Elem()
		for k, x := range m {
			ev.SetZero()
			if err := b.fromNative(s.Values, x, ev, path); err != nil {
				return err
			}
			out.SetMapIndex(reflect.ValueOf(k).Convert(dst.Type().Key()), ev)
		}
		dst.Set(out)
	case avroschema.Null:
		dst.SetZero()
	}
	return nil
}
