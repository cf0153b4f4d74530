// Package avrocompat decides whether data written with one Avro schema can be
// read with another, following the "Schema Resolution" rules of the Avro
// specification, and reports each violation with the path of the field that
// causes it.
package avrocompat

import (
	"fmt"
	"strings"

	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
)

// Direction names which side of a change cannot read the other.
type Direction string

const (
	// Backward: the new schema (reader) cannot read data written with the old one.
	Backward Direction = "backward"
	// Forward: the old schema (reader) cannot read data written with the new one.
	Forward Direction = "forward"
)

// Incompatibility is one reason a reader cannot read a writer's data.
type Incompatibility struct {
	Direction Direction // set by CheckFull; empty from CheckReadable
	// Path locates the offending field, e.g. payload[JobSubmitted].resource_request.nodes.
	Path    string
	Message string
}

func (i Incompatibility) String() string {
	path := i.Path
	if path == "" {
		path = "<root>"
	}
	if i.Direction != "" {
		return fmt.Sprintf("%s: %s: %s", i.Direction, path, i.Message)
	}
	return fmt.Sprintf("%s: %s", path, i.Message)
}

// CheckReadable lists the reasons why data written with writer cannot be
// read with reader; none means the reader can read every writer datum.
func CheckReadable(reader, writer *avroschema.Schema) []Incompatibility {
	c := &checker{seen: map[[2]*avroschema.Schema]bool{}}
	c.check(reader, writer, "")
	return c.out
}

// CheckFull checks both directions between two versions of a schema: the
// new one must read old data (backward) and the old one new data (forward).
func CheckFull(old, new *avroschema.Schema) []Incompatibility {
	var out []Incompatibility
	for _, i := range CheckReadable(new, old) {
		i.Direction = Backward
		out = append(out, i)
	}
	for _, i := range CheckReadable(old, new) {
		i.Direction = Forward
		out = append(out, i)
	}
	return out
}

type checker struct {
	out []Incompatibility
	// seen breaks recursion through recursive record types.
	seen map[[2]*avroschema.Schema]bool
}

func (c *checker) fail(path, format string, args ...any) {
	c.out = append(c.out, Incompatibility{Path: path, Message: fmt.Sprintf(format, args...)})
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func unqualified(name string) string { return name[strings.LastIndexByte(name, '.')+1:] }

func (c *checker) check(r, w *avroschema.Schema, path string) {
	key := [2]*avroschema.Schema{r, w}
	if c.seen[key] {
		return
	}
	c.seen[key] = true
	defer delete(c.seen, key)

	if w.Kind == avroschema.Union {
		// Every branch the writer may use must be readable.
		for _, b := range w.Branches {
			c.check(r, b, path)
		}
		return
	}
	if r.Kind == avroschema.Union {
		i := avroschema.SelectBranch(r, w)
		if i < 0 {
			c.fail(path, "reader union has no branch for writer type %s", w.TypeName())
			return
		}
		c.check(r.Branches[i], w, path)
		return
	}
	if r.Kind != w.Kind {
		if !avroschema.Promotable(w.Kind, r.Kind) {
			c.fail(path, "writer type %s cannot be read as %s", w.TypeName(), r.TypeName())
		}
		return
	}
	switch r.Kind {
	case avroschema.Record:
		c.record(r, w, path)
	case avroschema.Enum:
		if !avroschema.NamesMatch(r, w) {
			c.fail(path, "enum name %s does not match writer's %s", r.Name, w.Name)
			return
		}
		if r.HasEnumDefault {
			return
		}
		for _, s := range w.Symbols {
			if r.Symbol(s) < 0 {
				c.fail(path, "writer symbol %s of enum %s is unknown to the reader, which has no default", s, unqualified(r.Name))
			}
		}
	case avroschema.Fixed:
		if !avroschema.NamesMatch(r, w) {
			c.fail(path, "fixed name %s does not match writer's %s", r.Name, w.Name)
		} else if r.Size != w.Size {
			c.fail(path, "fixed %s size %d does not match writer's %d", unqualified(r.Name), r.Size, w.Size)
		}
	case avroschema.Array:
		c.check(r.Items, w.Items, path+"[]")
	case avroschema.Map:
		c.check(r.Values, w.Values, path+"{}")
	}
}

func (c *checker) record(r, w *avroschema.Schema, path string) {
	if !avroschema.NamesMatch(r, w) {
		c.fail(path, "record name %s does not match writer's %s", r.Name, w.Name)
		return
	}
	for _, rf := range r.Fields {
		fp := join(path, rf.Name)
		wf := avroschema.WriterField(w, rf)
		if wf == nil {
			if !rf.HasDefault {
				c.fail(fp, "field is missing in the writer's %s and has no default", unqualified(w.Name))
			}
			continue
		}
		if rf.Type.Kind == avroschema.Union || wf.Type.Kind == avroschema.Union {
			c.union(rf.Type, wf.Type, fp)
			continue
		}
		c.check(rf.Type, wf.Type, fp)
	}
}

// union checks a field whose reader or writer type is a union, naming the
// writer's record branches in the path (payload[JobSubmitted].job_id).
func (c *checker) union(r, w *avroschema.Schema, path string) {
	if w.Kind != avroschema.Union {
		c.check(r, w, path)
		return
	}
	for _, b := range w.Branches {
		bp := path
		if b.Kind == avroschema.Record {
			bp = fmt.Sprintf("%s[%s]", path, unqualified(b.Name))
		}
		c.check(r, b, bp)
	}
}
