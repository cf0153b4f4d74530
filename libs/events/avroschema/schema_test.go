package avroschema_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		src     string
		check   func(t *testing.T, s *avroschema.Schema)
		wantErr string
	}{
		{name: "primitive", src: `"long"`, check: func(t *testing.T, s *avroschema.Schema) { require.Equal(t, avroschema.Long, s.Kind) }},
		{name: "logical type", src: `{"type":"long","logicalType":"timestamp-micros"}`, check: func(t *testing.T, s *avroschema.Schema) {
			require.Equal(t, "timestamp-micros", s.LogicalType)
		}},
		{name: "namespaces and references", src: `{"type":"record","name":"R","namespace":"a.b","fields":[
			{"name":"e","type":{"type":"enum","name":"E","symbols":["X","Y"],"default":"X"}},
			{"name":"f","type":["null","E"],"default":null},
			{"name":"g","type":{"type":"record","name":"c.G","fields":[]}},
			{"name":"self","type":["null","R"],"default":null}]}`,
			check: func(t *testing.T, s *avroschema.Schema) {
				require.Equal(t, "a.b.R", s.Name)
				require.Same(t, s.Fields[0].Type, s.Fields[1].Type.Branches[1])
				require.Equal(t, "c.G", s.Fields[2].Type.Name)
				require.Same(t, s, s.Fields[3].Type.Branches[1])
				require.True(t, s.Fields[0].Type.HasEnumDefault)
				require.Equal(t, "E", s.Fields[0].Type.ShortName())
			}},
		{name: "unknown type", src: `{"type":"record","name":"R","fields":[{"name":"a","type":"Nope"}]}`, wantErr: `unknown type "Nope"`},
		{name: "duplicate name", src: `["null",{"type":"fixed","name":"F","size":1},{"type":"fixed","name":"F","size":2}]`, wantErr: "defined twice"},
		{name: "nested union", src: `["null",["int"]]`, wantErr: "unions may not contain unions"},
		{name: "duplicate branch", src: `["int","int"]`, wantErr: "two branches"},
		{name: "bad default", src: `{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}`, wantErr: "field a: default"},
		{name: "union default must match first branch", src: `{"type":"record","name":"R","fields":[{"name":"a","type":["null","int"],"default":1}]}`, wantErr: "default"},
		{name: "bad enum default", src: `{"type":"enum","name":"E","symbols":["A"],"default":"B"}`, wantErr: "not one of the symbols"},
		{name: "bad symbol", src: `{"type":"enum","name":"E","symbols":["a-b"]}`, wantErr: "invalid symbol"},
		{name: "duplicate field", src: `{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}`, wantErr: "duplicate field"},
		{name: "trailing data", src: `"int" "long"`, wantErr: "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := avroschema.Parse([]byte(tt.src))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, s)
		})
	}
}

func TestSelectBranch(t *testing.T) {
	t.Parallel()
	union, err := avroschema.Parse([]byte(`["null","double","string",{"type":"record","name":"n.R","fields":[]}]`))
	require.NoError(t, err)
	tests := []struct {
		name   string
		writer string
		want   int
	}{
		{name: "exact primitive", writer: `"string"`, want: 2},
		{name: "promoted int", writer: `"int"`, want: 1},
		{name: "bytes to string", writer: `"bytes"`, want: 2},
		{name: "record by unqualified name", writer: `{"type":"record","name":"m.R","fields":[]}`, want: 3},
		{name: "no match", writer: `"boolean"`, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, err := avroschema.Parse([]byte(tt.writer))
			require.NoError(t, err)
			require.Equal(t, tt.want, avroschema.SelectBranch(union, w))
		})
	}
}
