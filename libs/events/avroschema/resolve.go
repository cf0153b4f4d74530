package avroschema

import "strings"

// The schema resolution rules of the Avro specification that both the
// decoder and the compatibility checker apply.

func unqualified(name string) string { return name[strings.LastIndexByte(name, '.')+1:] }

// NamesMatch applies the rule for named types: reader and writer have the
// same unqualified name, or the writer's name is among the reader's aliases.
func NamesMatch(reader, writer *Schema) bool {
	if unqualified(reader.Name) == unqualified(writer.Name) {
		return true
	}
	for _, a := range reader.Aliases {
		if a == writer.Name || unqualified(a) == unqualified(writer.Name) {
			return true
		}
	}
	return false
}

// Promotable reports whether a writer value of kind w may be read as kind r:
// int to long, float or double; long to float or double; float to double;
// string to bytes and bytes to string.
func Promotable(w, r Kind) bool {
	switch w {
	case Int:
		return r == Long || r == Float || r == Double
	case Long:
		return r == Float || r == Double
	case Float:
		return r == Double
	case String:
		return r == Bytes
	case Bytes:
		return r == String
	}
	return false
}

// SameType reports whether reader and writer are the same type: the same
// kind, and for named types matching names.
func SameType(reader, writer *Schema) bool {
	if reader.Kind != writer.Kind {
		return false
	}
	if reader.Kind.Named() {
		return NamesMatch(reader, writer)
	}
	return true
}

// SelectBranch returns the index of the branch of the reader union that a
// writer value of schema w resolves to: the first branch of the same type,
// else the first branch w promotes to; -1 if none.
func SelectBranch(union, w *Schema) int {
	for i, b := range union.Branches {
		if SameType(b, w) {
			return i
		}
	}
	for i, b := range union.Branches {
		if Promotable(w.Kind, b.Kind) {
			return i
		}
	}
	return -1
}

// WriterField returns the field of writer record w that reader field rf
// reads: the one with the same name, else one named by an alias of rf.
func WriterField(w *Schema, rf *Field) *Field {
	if f := w.Field(rf.Name); f != nil {
		return f
	}
	for _, a := range rf.Aliases {
		if f := w.Field(a); f != nil {
			return f
		}
	}
	return nil
}
