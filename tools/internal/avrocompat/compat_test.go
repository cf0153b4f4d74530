package avrocompat_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
	"github.com/cosmic-horizons/fleet/tools/internal/avrocompat"
)

func parse(t *testing.T, src string) *avroschema.Schema {
	t.Helper()
	s, err := avroschema.Parse([]byte(src))
	require.NoError(t, err, src)
	return s
}

// rec wraps fields into a record named R in namespace ns.
func rec(fields string) string {
	return `{"type":"record","name":"R","namespace":"ns","fields":[` + fields + `]}`
}

func TestCheckReadable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		reader string
		writer string
		// wantPaths lists "path: message fragment" of every expected incompatibility; empty = compatible.
		wantPaths []string
	}{
		{name: "identical primitives", reader: `"string"`, writer: `"string"`},
		{name: "int promotes to long", reader: `"long"`, writer: `"int"`},
		{name: "int promotes to float", reader: `"float"`, writer: `"int"`},
		{name: "int promotes to double", reader: `"double"`, writer: `"int"`},
		{name: "long promotes to float", reader: `"float"`, writer: `"long"`},
		{name: "long promotes to double", reader: `"double"`, writer: `"long"`},
		{name: "float promotes to double", reader: `"double"`, writer: `"float"`},
		{name: "string reads as bytes", reader: `"bytes"`, writer: `"string"`},
		{name: "bytes reads as string", reader: `"string"`, writer: `"bytes"`},
		{name: "long does not narrow to int", reader: `"int"`, writer: `"long"`, wantPaths: []string{"<root>: writer type long cannot be read as int"}},
		{name: "double does not narrow to float", reader: `"float"`, writer: `"double"`, wantPaths: []string{"<root>: writer type double"}},
		{name: "string is not int", reader: `"int"`, writer: `"string"`, wantPaths: []string{"<root>: writer type string"}},
		{name: "logical type ignored", reader: `{"type":"long","logicalType":"timestamp-micros"}`, writer: `"long"`},

		{name: "record same fields", reader: rec(`{"name":"a","type":"int"}`), writer: rec(`{"name":"a","type":"int"}`)},
		{name: "record reader adds field with default", reader: rec(`{"name":"a","type":"int"},{"name":"b","type":"string","default":"x"}`), writer: rec(`{"name":"a","type":"int"}`)},
		{name: "record reader adds field without default", reader: rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`), writer: rec(`{"name":"a","type":"int"}`),
			wantPaths: []string{"b: field is missing in the writer's R and has no default"}},
		{name: "record writer has extra field", reader: rec(`{"name":"a","type":"int"}`), writer: rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`)},
		{name: "record field renamed with alias", reader: rec(`{"name":"b","aliases":["a"],"type":"int"}`), writer: rec(`{"name":"a","type":"int"}`)},
		{name: "record field type promoted", reader: rec(`{"name":"a","type":"long"}`), writer: rec(`{"name":"a","type":"int"}`)},
		{name: "record field type narrowed", reader: rec(`{"name":"a","type":"int"}`), writer: rec(`{"name":"a","type":"long"}`), wantPaths: []string{"a: writer type long"}},
		{name: "record different name", reader: `{"type":"record","name":"S","fields":[]}`, writer: `{"type":"record","name":"R","fields":[]}`, wantPaths: []string{"<root>: record name S"}},
		{name: "record renamed with alias", reader: `{"type":"record","name":"S","aliases":["R"],"fields":[]}`, writer: `{"type":"record","name":"R","fields":[]}`},
		{name: "record namespace change keeps unqualified name", reader: `{"type":"record","name":"a.R","fields":[]}`, writer: `{"type":"record","name":"b.R","fields":[]}`},
		{name: "nested record field path", reader: rec(`{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"x","type":"int"}]}}`),
			writer: rec(`{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"x","type":"string"}]}}`), wantPaths: []string{"n.x: writer type string"}},

		{name: "enum same symbols", reader: `{"type":"enum","name":"E","symbols":["A","B"]}`, writer: `{"type":"enum","name":"E","symbols":["A","B"]}`},
		{name: "enum reader adds symbol", reader: `{"type":"enum","name":"E","symbols":["A","B","C"]}`, writer: `{"type":"enum","name":"E","symbols":["A","B"]}`},
		{name: "enum writer adds symbol, reader without default", reader: `{"type":"enum","name":"E","symbols":["A","B"]}`, writer: `{"type":"enum","name":"E","symbols":["A","B","C"]}`,
			wantPaths: []string{"<root>: writer symbol C of enum E"}},
		{name: "enum writer adds symbol, reader with default", reader: `{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}`, writer: `{"type":"enum","name":"E","symbols":["A","B","C"]}`},
		{name: "enum symbols reordered", reader: `{"type":"enum","name":"E","symbols":["B","A"]}`, writer: `{"type":"enum","name":"E","symbols":["A","B"]}`},
		{name: "enum renamed", reader: `{"type":"enum","name":"F","symbols":["A"]}`, writer: `{"type":"enum","name":"E","symbols":["A"]}`, wantPaths: []string{"<root>: enum name F"}},

		{name: "array items promoted", reader: `{"type":"array","items":"long"}`, writer: `{"type":"array","items":"int"}`},
		{name: "array items incompatible", reader: `{"type":"array","items":"int"}`, writer: `{"type":"array","items":"string"}`, wantPaths: []string{"[]: writer type string"}},
		{name: "map values promoted", reader: `{"type":"map","values":"double"}`, writer: `{"type":"map","values":"float"}`},
		{name: "map values incompatible", reader: `{"type":"map","values":"boolean"}`, writer: `{"type":"map","values":"string"}`, wantPaths: []string{"{}: writer type string"}},
		{name: "array is not map", reader: `{"type":"array","items":"string"}`, writer: `{"type":"map","values":"string"}`, wantPaths: []string{"<root>: writer type map cannot be read as array"}},
		{name: "fixed same size", reader: `{"type":"fixed","name":"F","size":16}`, writer: `{"type":"fixed","name":"F","size":16}`},
		{name: "fixed other size", reader: `{"type":"fixed","name":"F","size":8}`, writer: `{"type":"fixed","name":"F","size":16}`, wantPaths: []string{"<root>: fixed F size 8"}},
		{name: "fixed other name", reader: `{"type":"fixed","name":"G","size":16}`, writer: `{"type":"fixed","name":"F","size":16}`, wantPaths: []string{"<root>: fixed name G"}},

		{name: "union reader adds branch", reader: `["null","string","int"]`, writer: `["null","string"]`},
		{name: "union writer adds branch", reader: `["null","string"]`, writer: `["null","string","int"]`, wantPaths: []string{"<root>: reader union has no branch for writer type int"}},
		{name: "union branch promoted", reader: `["null","long"]`, writer: `["null","int"]`},
		{name: "union branches reordered", reader: `["string","null"]`, writer: `["null","string"]`},
		{name: "writer non-union read as union", reader: `["null","string"]`, writer: `"string"`},
		{name: "writer non-union missing from reader union", reader: `["null","string"]`, writer: `"int"`, wantPaths: []string{"<root>: reader union has no branch for writer type int"}},
		{name: "writer union read as non-union, every branch fits", reader: `"long"`, writer: `["int","long"]`},
		{name: "writer union read as non-union, a branch does not fit", reader: `"string"`, writer: `["null","string"]`, wantPaths: []string{"<root>: writer type null cannot be read as string"}},
		{name: "union record branch by name", reader: rec(`{"name":"p","type":[{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]},{"type":"record","name":"B","fields":[]}]}`),
			writer: rec(`{"name":"p","type":[{"type":"record","name":"A","fields":[{"name":"x","type":"int"},{"name":"y","type":"int"}]}]}`)},
		{name: "union record branch removed", reader: rec(`{"name":"p","type":[{"type":"record","name":"A","fields":[]}]}`),
			writer:    rec(`{"name":"p","type":[{"type":"record","name":"A","fields":[]},{"type":"record","name":"B","fields":[]}]}`),
			wantPaths: []string{"p[B]: reader union has no branch for writer type ns.B"}},
		{name: "union record branch field without default", reader: rec(`{"name":"p","type":[{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}]}`),
			writer:    rec(`{"name":"p","type":[{"type":"record","name":"A","fields":[]}]}`),
			wantPaths: []string{"p[A].x: field is missing in the writer's A and has no default"}},
		{name: "recursive record", reader: `{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}`, writer: `{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := avrocompat.CheckReadable(parse(t, tt.reader), parse(t, tt.writer))
			require.Len(t, got, len(tt.wantPaths), "%v", got)
			for i, want := range tt.wantPaths {
				require.True(t, strings.HasPrefix(got[i].String(), want), "got %q, want prefix %q", got[i].String(), want)
			}
		})
	}
}

func TestCheckFull(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		old  string
		new  string
		want []string
	}{
		{name: "add optional field", old: rec(`{"name":"a","type":"int"}`), new: rec(`{"name":"a","type":"int"},{"name":"b","type":["null","string"],"default":null}`)},
		{name: "add field without default breaks backward", old: rec(`{"name":"a","type":"int"}`), new: rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`),
			want: []string{"backward: b: field is missing"}},
		{name: "remove field without default breaks forward", old: rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`), new: rec(`{"name":"a","type":"int"}`),
			want: []string{"forward: b: field is missing"}},
		{name: "remove field with default", old: rec(`{"name":"a","type":"int"},{"name":"b","type":"string","default":""}`), new: rec(`{"name":"a","type":"int"}`)},
		{name: "promotion is only backward", old: rec(`{"name":"a","type":"int"}`), new: rec(`{"name":"a","type":"long"}`),
			want: []string{"forward: a: writer type long cannot be read as int"}},
		{name: "enum symbol added without default breaks forward", old: `{"type":"enum","name":"E","symbols":["A"]}`, new: `{"type":"enum","name":"E","symbols":["A","B"]}`,
			want: []string{"forward: <root>: writer symbol B"}},
		{name: "enum symbol added with default", old: `{"type":"enum","name":"E","symbols":["A"],"default":"A"}`, new: `{"type":"enum","name":"E","symbols":["A","B"],"default":"A"}`},
		{name: "union branch added breaks forward", old: `["null","string"]`, new: `["null","string","long"]`,
			want: []string{"forward: <root>: reader union has no branch for writer type long"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := avrocompat.CheckFull(parse(t, tt.old), parse(t, tt.new))
			require.Len(t, got, len(tt.want), "%v", got)
			for i, want := range tt.want {
				require.True(t, strings.HasPrefix(got[i].String(), want), "got %q, want prefix %q", got[i].String(), want)
			}
		})
	}
}

func TestFixtureV2AddingOptionalFieldIsFullCompatible(t *testing.T) {
	t.Parallel()
	read := func(p string) *avroschema.Schema {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		return parse(t, string(b))
	}
	v1 := read("testdata/job-lifecycle/v1.avsc")
	v2 := read("testdata/job-lifecycle/v2.avsc")
	require.Empty(t, avrocompat.CheckFull(v1, v2))

	broken := read("testdata/job-lifecycle-broken/v2.avsc")
	got := avrocompat.CheckFull(v1, broken)
	require.NotEmpty(t, got)
	require.Equal(t, "payload[JobSubmitted].site", got[0].Path)
}
