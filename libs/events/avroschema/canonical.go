package avroschema

import (
	"strconv"
	"strings"
)

// CanonicalForm returns the Parsing Canonical Form of s as the Avro
// specification defines it: full names, only the attributes that affect
// parsing (name, type, fields, symbols, items, values, size, in that order),
// primitives as bare strings (a logical type is dropped with every other
// attribute), a named type written out once and referred to by its full
// name after that, no white space.
func CanonicalForm(s *Schema) string {
	var b strings.Builder
	writeCanonical(&b, s, map[*Schema]bool{})
	return b.String()
}

func writeCanonical(b *strings.Builder, s *Schema, written map[*Schema]bool) {
	if s.Kind.Named() {
		if written[s] {
			b.WriteString(strconv.Quote(s.Name))
			return
		}
		written[s] = true
		b.WriteString(`{"name":` + strconv.Quote(s.Name) + `,"type":"` + s.Kind.String() + `"`)
	}
	switch s.Kind {
	case Record:
		b.WriteString(`,"fields":[`)
		for i, f := range s.Fields {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"name":` + strconv.Quote(f.Name) + `,"type":`)
			writeCanonical(b, f.Type, written)
			b.WriteByte('}')
		}
		b.WriteString("]}")
	case Enum:
		b.WriteString(`,"symbols":[`)
		for i, sym := range s.Symbols {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(sym))
		}
		b.WriteString("]}")
	case Fixed:
		b.WriteString(`,"size":` + strconv.Itoa(s.Size) + "}")
	case Array:
		b.WriteString(`{"type":"array","items":`)
		writeCanonical(b, s.Items, written)
		b.WriteByte('}')
	case Map:
		b.WriteString(`{"type":"map","values":`)
		writeCanonical(b, s.Values, written)
		b.WriteByte('}')
	case Union:
		b.WriteByte('[')
		for i, br := range s.Branches {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, br, written)
		}
		b.WriteByte(']')
	default:
		b.WriteString(`"` + s.Kind.String() + `"`)
	}
}

// crc64Avro is the table of the CRC-64-AVRO (Rabin) fingerprint.
var crc64Avro = func() (t [256]uint64) {
	const empty = 0xc15d213aa4d7a795
	for i := range t {
		fp := uint64(i)
		for range 8 {
			fp = (fp >> 1) ^ (empty & -(fp & 1))
		}
		t[i] = fp
	}
	return t
}()

// Fingerprint64 returns the CRC-64-AVRO fingerprint of the Parsing
// Canonical Form of s: the fingerprint of Avro's single-object encoding,
// written little-endian after its two-byte marker.
func Fingerprint64(s *Schema) uint64 {
	fp := uint64(0xc15d213aa4d7a795)
	for _, c := range []byte(CanonicalForm(s)) {
		fp = (fp >> 8) ^ crc64Avro[byte(fp)^c]
	}
	return fp
}
