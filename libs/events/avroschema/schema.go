// Package avroschema parses Avro schema JSON into a tree that the event codec
// and the schema compatibility checker share: named types resolved, full
// names computed, field defaults kept as decoded JSON.
package avroschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Kind is the Avro type of a schema node.
type Kind int

// The Avro types.
const (
	Null Kind = iota + 1
	Boolean
	Int
	Long
	Float
	Double
	Bytes
	String
	Record
	Enum
	Array
	Map
	Union
	Fixed
)

var kindNames = map[Kind]string{
	Null: "null", Boolean: "boolean", Int: "int", Long: "long", Float: "float", Double: "double",
	Bytes: "bytes", String: "string", Record: "record", Enum: "enum", Array: "array", Map: "map",
	Union: "union", Fixed: "fixed",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Named reports whether schemas of kind k carry a name.
func (k Kind) Named() bool { return k == Record || k == Enum || k == Fixed }

// Schema is one node of a parsed schema. Named types appear once per
// definition; references to them point at the same node.
type Schema struct {
	Kind        Kind
	LogicalType string
	Doc         string

	// Named types.
	Name    string   // full name, e.g. org.example.Thing
	Aliases []string // full names

	Fields []*Field // record

	Symbols     []string // enum
	EnumDefault string   // enum; valid when HasEnumDefault
	// HasEnumDefault tells whether the enum declares a default symbol.
	HasEnumDefault bool

	Items    *Schema   // array
	Values   *Schema   // map
	Branches []*Schema // union
	Size     int       // fixed
}

// Field is one field of a record.
type Field struct {
	Name    string
	Aliases []string
	Doc     string
	Type    *Schema
	// Default is the field's default decoded from JSON (nil, bool, float64 via
	// json.Number, string, []any, map[string]any); valid when HasDefault.
	Default    any
	HasDefault bool
	Index      int
}

// TypeName is the name that identifies a schema as a union branch: the full
// name of a named type, otherwise the type name (e.g. "string", "map").
func (s *Schema) TypeName() string {
	if s.Kind.Named() {
		return s.Name
	}
	return s.Kind.String()
}

// ShortName is the last dot-separated part of a named type's name.
func (s *Schema) ShortName() string {
	return s.Name[strings.LastIndexByte(s.Name, '.')+1:]
}

// Field returns the record field called name, or nil.
func (s *Schema) Field(name string) *Field {
	for _, f := range s.Fields {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// Symbol returns the position of sym in an enum's symbols, or -1.
func (s *Schema) Symbol(sym string) int {
	for i, x := range s.Symbols {
		if x == sym {
			return i
		}
	}
	return -1
}

// NameMatches reports whether the named schema s answers to name: its own
// full name or one of its aliases.
func (s *Schema) NameMatches(name string) bool {
	if s.Name == name {
		return true
	}
	for _, a := range s.Aliases {
		if a == name {
			return true
		}
	}
	return false
}

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Parse parses one schema document.
func Parse(src []byte) (*Schema, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse avro schema: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parse avro schema: trailing data after the schema")
	}
	p := &parser{named: map[string]*Schema{}}
	s, err := p.parse(doc, "")
	if err != nil {
		return nil, fmt.Errorf("parse avro schema: %w", err)
	}
	return s, nil
}

type parser struct {
	named map[string]*Schema
}

var primitives = map[string]Kind{
	"null": Null, "boolean": Boolean, "int": Int, "long": Long, "float": Float,
	"double": Double, "bytes": Bytes, "string": String,
}

func fullName(name, namespace string) string {
	if strings.Contains(name, ".") || namespace == "" {
		return name
	}
	return namespace + "." + name
}

func validFullName(n string) bool {
	for _, part := range strings.Split(n, ".") {
		if !nameRE.MatchString(part) {
			return false
		}
	}
	return true
}

func (p *parser) parse(doc any, namespace string) (*Schema, error) {
	switch d := doc.(type) {
	case string:
		if k, ok := primitives[d]; ok {
			return &Schema{Kind: k}, nil
		}
		if s, ok := p.named[fullName(d, namespace)]; ok {
			return s, nil
		}
		if s, ok := p.named[d]; ok {
			return s, nil
		}
		return nil, fmt.Errorf("unknown type %q", d)
	case []any:
		u := &Schema{Kind: Union}
		seen := map[string]bool{}
		for i, b := range d {
			if _, nested := b.([]any); nested {
				return nil, fmt.Errorf("union branch %d: unions may not contain unions", i)
			}
			s, err := p.parse(b, namespace)
			if err != nil {
				return nil, fmt.Errorf("union branch %d: %w", i, err)
			}
			if seen[s.TypeName()] {
				return nil, fmt.Errorf("union has two branches of type %s", s.TypeName())
			}
			seen[s.TypeName()] = true
			u.Branches = append(u.Branches, s)
		}
		if len(u.Branches) == 0 {
			return nil, errors.New("empty union")
		}
		return u, nil
	case map[string]any:
		return p.parseObject(d, namespace)
	default:
		return nil, fmt.Errorf("unexpected schema JSON %T", doc)
	}
}

func str(m map[string]any, key string) (string, error) {
	v, ok := m[key]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%q must be a string", key)
	}
	return s, nil
}

func (p *parser) aliases(m map[string]any, namespace string) ([]string, error) {
	v, ok := m["aliases"]
	if !ok {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errors.New(`"aliases" must be an array of strings`)
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		s, ok := a.(string)
		if !ok {
			return nil, errors.New(`"aliases" must be an array of strings`)
		}
		out = append(out, fullName(s, namespace))
	}
	return out, nil
}

func (p *parser) parseObject(m map[string]any, namespace string) (*Schema, error) {
	typ, ok := m["type"]
	if !ok {
		return nil, errors.New(`schema object without "type"`)
	}
	t, ok := typ.(string)
	if !ok {
		// {"type": {...}} or {"type": [...]}: a wrapped schema.
		return p.parse(typ, namespace)
	}
	logical, err := str(m, "logicalType")
	if err != nil {
		return nil, err
	}
	doc, err := str(m, "doc")
	if err != nil {
		return nil, err
	}
	if k, ok := primitives[t]; ok {
		return &Schema{Kind: k, LogicalType: logical, Doc: doc}, nil
	}
	switch t {
	case "record", "error", "enum", "fixed":
		return p.parseNamed(m, t, namespace, logical, doc)
	case "array":
		items, ok := m["items"]
		if !ok {
			return nil, errors.New(`array without "items"`)
		}
		it, err := p.parse(items, namespace)
		if err != nil {
			return nil, fmt.Errorf("array items: %w", err)
		}
		return &Schema{Kind: Array, Items: it, LogicalType: logical, Doc: doc}, nil
	case "map":
		values, ok := m["values"]
		if !ok {
			return nil, errors.New(`map without "values"`)
		}
		vt, err := p.parse(values, namespace)
		if err != nil {
			return nil, fmt.Errorf("map values: %w", err)
		}
		return &Schema{Kind: Map, Values: vt, LogicalType: logical, Doc: doc}, nil
	default:
		// A reference written as {"type": "Name"}.
		return p.parse(t, namespace)
	}
}

func (p *parser) parseNamed(m map[string]any, t, namespace, logical, doc string) (*Schema, error) {
	name, err := str(m, "name")
	if err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("%s without a name", t)
	}
	ns, err := str(m, "namespace")
	if err != nil {
		return nil, err
	}
	if _, has := m["namespace"]; !has {
		ns = namespace
	}
	full := fullName(name, ns)
	if !validFullName(full) {
		return nil, fmt.Errorf("invalid name %q", full)
	}
	if _, dup := p.named[full]; dup {
		return nil, fmt.Errorf("type %s defined twice", full)
	}
	if _, prim := primitives[full]; prim {
		return nil, fmt.Errorf("named type may not be called %s", full)
	}
	// Names inside a named type resolve against its namespace.
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		ns = full[:i]
	} else {
		ns = ""
	}
	aliases, err := p.aliases(m, ns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", full, err)
	}
	s := &Schema{Name: full, Aliases: aliases, LogicalType: logical, Doc: doc}
	switch t {
	case "record", "error":
		s.Kind = Record
		p.named[full] = s // registered before the fields: records may refer to themselves
		if err := p.parseFields(s, m, ns); err != nil {
			return nil, fmt.Errorf("record %s: %w", full, err)
		}
	case "enum":
		s.Kind = Enum
		if err := parseEnum(s, m); err != nil {
			return nil, fmt.Errorf("enum %s: %w", full, err)
		}
		p.named[full] = s
	case "fixed":
		s.Kind = Fixed
		n, ok := m["size"].(json.Number)
		size, err := n.Int64()
		if !ok || err != nil || size < 0 {
			return nil, fmt.Errorf("fixed %s: size must be a non-negative integer", full)
		}
		s.Size = int(size)
		p.named[full] = s
	}
	return s, nil
}

func parseEnum(s *Schema, m map[string]any) error {
	list, ok := m["symbols"].([]any)
	if !ok {
		return errors.New(`"symbols" must be an array of strings`)
	}
	seen := map[string]bool{}
	for _, x := range list {
		sym, ok := x.(string)
		if !ok || !nameRE.MatchString(sym) {
			return fmt.Errorf("invalid symbol %v", x)
		}
		if seen[sym] {
			return fmt.Errorf("duplicate symbol %s", sym)
		}
		seen[sym] = true
		s.Symbols = append(s.Symbols, sym)
	}
	if d, ok := m["default"]; ok {
		ds, ok := d.(string)
		if !ok || !seen[ds] {
			return fmt.Errorf("default %v is not one of the symbols", d)
		}
		s.EnumDefault, s.HasEnumDefault = ds, true
	}
	return nil
}

func (p *parser) parseFields(s *Schema, m map[string]any, ns string) error {
	list, ok := m["fields"].([]any)
	if !ok {
		return errors.New(`"fields" must be an array`)
	}
	seen := map[string]bool{}
	for i, x := range list {
		fm, ok := x.(map[string]any)
		if !ok {
			return fmt.Errorf("field %d is not an object", i)
		}
		name, err := str(fm, "name")
		if err != nil || !nameRE.MatchString(name) {
			return fmt.Errorf("field %d: invalid name %v", i, fm["name"])
		}
		if seen[name] {
			return fmt.Errorf("duplicate field %s", name)
		}
		seen[name] = true
		typ, ok := fm["type"]
		if !ok {
			return fmt.Errorf("field %s: no type", name)
		}
		ft, err := p.parse(typ, ns)
		if err != nil {
			return fmt.Errorf("field %s: %w", name, err)
		}
		doc, err := str(fm, "doc")
		if err != nil {
			return fmt.Errorf("field %s: %w", name, err)
		}
		f := &Field{Name: name, Doc: doc, Type: ft, Index: i}
		if list, ok := fm["aliases"].([]any); ok {
			for _, a := range list {
				as, ok := a.(string)
				if !ok {
					return fmt.Errorf("field %s: aliases must be strings", name)
				}
				f.Aliases = append(f.Aliases, as)
			}
		}
		if d, ok := fm["default"]; ok {
			if err := CheckDefault(ft, d); err != nil {
				return fmt.Errorf("field %s: default: %w", name, err)
			}
			f.Default, f.HasDefault = d, true
		}
		s.Fields = append(s.Fields, f)
	}
	return nil
}

// CheckDefault reports whether the JSON value d (decoded with UseNumber) is
// a valid default for s. A union's default must match its first branch.
func CheckDefault(s *Schema, d any) error {
	bad := func() error { return fmt.Errorf("%v (%T) is not a valid %s", d, d, s.TypeName()) }
	switch s.Kind {
	case Null:
		if d != nil {
			return bad()
		}
	case Boolean:
		if _, ok := d.(bool); !ok {
			return bad()
		}
	case Int, Long:
		n, ok := d.(json.Number)
		if !ok {
			return bad()
		}
		if _, err := n.Int64(); err != nil {
			return bad()
		}
	case Float, Double:
		n, ok := d.(json.Number)
		if !ok {
			return bad()
		}
		if _, err := n.Float64(); err != nil {
			return bad()
		}
	case Bytes, String, Fixed:
		if _, ok := d.(string); !ok {
			return bad()
		}
	case Enum:
		v, ok := d.(string)
		if !ok || s.Symbol(v) < 0 {
			return bad()
		}
	case Array:
		list, ok := d.([]any)
		if !ok {
			return bad()
		}
		for _, x := range list {
			if err := CheckDefault(s.Items, x); err != nil {
				return err
			}
		}
	case Map:
		m, ok := d.(map[string]any)
		if !ok {
			return bad()
		}
		for _, x := range m {
			if err := CheckDefault(s.Values, x); err != nil {
				return err
			}
		}
	case Record:
		m, ok := d.(map[string]any)
		if !ok {
			return bad()
		}
		for _, f := range s.Fields {
			v, has := m[f.Name]
			switch {
			case has:
				if err := CheckDefault(f.Type, v); err != nil {
					return fmt.Errorf("field %s: %w", f.Name, err)
				}
			case !f.HasDefault:
				return fmt.Errorf("field %s missing from record default", f.Name)
			}
		}
	case Union:
		return CheckDefault(s.Branches[0], d)
	}
	return nil
}
