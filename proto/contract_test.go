package proto_test

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	_ "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	_ "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	_ "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	_ "github.com/cosmic-horizons/fleet/proto/fleet/notification/v1"
)

// contractRoot is the directory (relative to this module) holding the fleet's .proto files.
const contractRoot = "fleet"

var (
	rePackage   = regexp.MustCompile(`^package\s+([\w.]+)\s*;$`)
	reBlockOpen = regexp.MustCompile(`^(message|enum|service|oneof)\s+(\w+)\s*\{\s*(\})?$`)
	reRPC       = regexp.MustCompile(`^rpc\s+(\w+)\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*returns\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*;$`)
	reField     = regexp.MustCompile(`^(?:(?:repeated|optional)\s+)?(?:[\w.]+|map\s*<\s*\w+\s*,\s*[\w.]+\s*>)\s+(\w+)\s*=\s*\d+\s*(?:\[[^\]]*\])?\s*;$`)
	reEnumValue = regexp.MustCompile(`^([A-Z][A-Z0-9_]*)\s*=\s*-?\d+\s*(?:\[[^\]]*\])?\s*;$`)
	reExempt    = regexp.MustCompile(`^(syntax|import|option|reserved)\b.*;$`)
)

// scope is one open block of a .proto file while it is scanned.
type scope struct {
	kind string // "message", "enum", "service" or "oneof"
	name string // the block's full name
}

// contractDoc is what scanning one .proto file found.
type contractDoc struct {
	documented []string // full names of every declared element; each had a leading comment
	problems   []string // declarations without a leading comment, or lines the scanner cannot read
}

// scanContract reads a .proto file line by line and requires a `//` comment on the line right
// before every message, enum, enum value, service, rpc, oneof and field. It accepts only the
// layout used in this repository (one declaration per line); anything else is reported as a
// problem rather than skipped, so an element cannot escape the check by its formatting.
func scanContract(name, src string) contractDoc {
	var (
		doc      contractDoc
		pkg      string
		stack    []scope
		prevLine string
	)
	sc := bufio.NewScanner(strings.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		raw := strings.TrimSpace(sc.Text())
		line := raw
		if i := strings.Index(line, "//"); i > 0 {
			line = strings.TrimSpace(line[:i]) // trailing comment
		}
		commented := strings.HasPrefix(prevLine, "//")
		prevLine = raw
		if line == "" || strings.HasPrefix(line, "//") {
			continue
		}

		parent := pkg
		parentKind := ""
		if len(stack) > 0 {
			parent = stack[len(stack)-1].name
			parentKind = stack[len(stack)-1].kind
		}
		declare := func(kind, fullName string) {
			if commented {
				doc.documented = append(doc.documented, fullName)
				return
			}
			doc.problems = append(doc.problems, fmt.Sprintf("%s:%d: %s %s has no leading // comment", name, n, kind, fullName))
		}

		pkgMatch := rePackage.FindStringSubmatch(line)
		block := reBlockOpen.FindStringSubmatch(line)
		rpc := reRPC.FindStringSubmatch(line)
		field := reField.FindStringSubmatch(line)
		value := reEnumValue.FindStringSubmatch(line)
		switch {
		case line == "}" && len(stack) > 0:
			stack = stack[:len(stack)-1]
		case pkgMatch != nil && parentKind == "":
			pkg = pkgMatch[1]
		case block != nil && blockAllowed(parentKind, block[1]):
			kind, full := block[1], parent+"."+block[2]
			declare(kind, full)
			switch {
			case kind == "oneof":
				// A oneof's fields are named within the enclosing message.
				stack = append(stack, scope{kind: kind, name: parent})
			case block[3] == "":
				stack = append(stack, scope{kind: kind, name: full})
			}
		case rpc != nil && parentKind == "service":
			declare("rpc", parent+"."+rpc[1])
		case value != nil && parentKind == "enum":
			// Enum values are scoped like their enum, not inside it.
			declare("enum value", parent[:strings.LastIndex(parent, ".")]+"."+value[1])
		case field != nil && (parentKind == "message" || parentKind == "oneof"):
			declare("field", parent+"."+field[1])
		case reExempt.MatchString(line) && parentKind != "service" && parentKind != "oneof":
			// syntax, imports, options and reserved ranges need no comment of their own.
		default:
			doc.problems = append(doc.problems, fmt.Sprintf("%s:%d: cannot read %q", name, n, raw))
		}
	}
	if len(stack) > 0 {
		doc.problems = append(doc.problems, fmt.Sprintf("%s: %d block(s) not closed", name, len(stack)))
	}
	return doc
}

// blockAllowed reports whether a block of kind may open inside a block of parentKind ("" is
// the top level).
func blockAllowed(parentKind, kind string) bool {
	switch parentKind {
	case "":
		return kind == "message" || kind == "enum" || kind == "service"
	case "message":
		return kind == "message" || kind == "enum" || kind == "oneof"
	default:
		return false
	}
}

// descriptorNames lists the full names of every service, method, message, field, oneof, enum and
// enum value declared in a registered file.
func descriptorNames(fd protoreflect.FileDescriptor) []string {
	var names []string
	var enums func(protoreflect.EnumDescriptors)
	enums = func(es protoreflect.EnumDescriptors) {
		for i := range es.Len() {
			e := es.Get(i)
			names = append(names, string(e.FullName()))
			for j := range e.Values().Len() {
				names = append(names, string(e.Values().Get(j).FullName()))
			}
		}
	}
	var messages func(protoreflect.MessageDescriptors)
	messages = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			m := ms.Get(i)
			if m.IsMapEntry() {
				continue // synthesised for map fields, not written in the source
			}
			names = append(names, string(m.FullName()))
			for j := range m.Fields().Len() {
				names = append(names, string(m.Fields().Get(j).FullName()))
			}
			for j := range m.Oneofs().Len() {
				if o := m.Oneofs().Get(j); !o.IsSynthetic() {
					names = append(names, string(o.FullName()))
				}
			}
			enums(m.Enums())
			messages(m.Messages())
		}
	}
	enums(fd.Enums())
	messages(fd.Messages())
	for i := range fd.Services().Len() {
		s := fd.Services().Get(i)
		names = append(names, string(s.FullName()))
		for j := range s.Methods().Len() {
			names = append(names, string(s.Methods().Get(j).FullName()))
		}
	}
	sort.Strings(names)
	return names
}

// contractFiles returns the .proto files under contractRoot, relative to this module.
func contractFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(contractRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".proto") {
			files = append(files, filepath.ToSlash(path))
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

func TestContractsAreDocumented(t *testing.T) {
	t.Parallel()
	for _, path := range contractFiles(t) {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(path)
			require.NoError(t, err)

			doc := scanContract(path, string(src))
			require.Empty(t, doc.problems, "every declaration needs a leading // comment")

			// The scanner must have seen exactly what the compiler saw, so that no element
			// escapes it (a declaration the scanner misread would be missing here).
			fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
			require.NoError(t, err, "%s has no generated Go code; run tools/proto-gen.sh", path)
			want := descriptorNames(fd)
			got := append([]string(nil), doc.documented...)
			sort.Strings(got)
			require.Equal(t, want, got)
		})
	}
}

func TestContractsAreVersionedPerArea(t *testing.T) {
	t.Parallel()
	for _, path := range contractFiles(t) {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			parts := strings.Split(path, "/")
			require.Len(t, parts, 4, "want fleet/<area>/<version>/<area>.proto")
			area, version := parts[1], parts[2]
			require.Equal(t, area+".proto", parts[3])

			fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
			require.NoError(t, err)
			require.Equal(t, protoreflect.FullName("fleet."+area+"."+version), fd.Package())

			for i := range fd.Enums().Len() {
				e := fd.Enums().Get(i)
				zero := e.Values().ByNumber(0)
				require.NotNil(t, zero, "enum %s has no zero value", e.FullName())
				require.True(t, strings.HasSuffix(string(zero.Name()), "_UNSPECIFIED"),
					"enum %s: zero value %s must be *_UNSPECIFIED", e.FullName(), zero.Name())
			}
		})
	}
}

func TestScanContractFindsUndocumentedDeclarations(t *testing.T) {
	t.Parallel()
	const header = "syntax = \"proto3\";\npackage a.v1;\n"
	tests := []struct {
		name     string
		src      string
		problems []string
	}{
		{
			name: "fully documented",
			src: header + `
// S does things.
service S {
  // Do does one thing.
  rpc Do(DoRequest) returns (stream DoResponse);
}
// E is an enum.
enum E {
  // E_UNSPECIFIED is unset.
  E_UNSPECIFIED = 0;
}
// M is a message.
message M {
  // ids are ids.
  repeated string ids = 1;
  // labels are labels.
  map<string, string> labels = 2;
  // choice is one of two.
  oneof choice {
    // a is one.
    string a = 3;
  }
  reserved 4;
}
`,
		},
		{
			name: "undocumented field",
			src: header + `
// M is a message.
message M {
  // a is documented.
  string a = 1;
  int64 b = 2; // a trailing comment is not enough
}
`,
			problems: []string{"x.proto:8: field a.v1.M.b has no leading // comment"},
		},
		{
			name:     "comment separated by a blank line",
			src:      header + "\n// M is detached.\n\nmessage M {}\n",
			problems: []string{"x.proto:6: message a.v1.M has no leading // comment"},
		},
		{
			name: "undocumented enum value and rpc",
			src: header + `
// E is an enum.
enum E {
  // E_UNSPECIFIED is unset.
  E_UNSPECIFIED = 0;
  E_ON = 1;
}
// S does things.
service S {
  rpc Do(DoRequest) returns (DoResponse);
}
`,
			problems: []string{
				"x.proto:8: enum value a.v1.E_ON has no leading // comment",
				"x.proto:12: rpc a.v1.S.Do has no leading // comment",
			},
		},
		{
			name:     "unreadable layout is a problem, not skipped",
			src:      header + "// M is a message.\nmessage M {\n  // a is split.\n  string a =\n    1;\n}\n",
			problems: []string{`x.proto:6: cannot read "string a ="`, `x.proto:7: cannot read "1;"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := scanContract("x.proto", tt.src)
			require.Equal(t, tt.problems, doc.problems)
		})
	}
}
