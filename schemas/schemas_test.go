package schemas_test

import (
	"encoding/json"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/schemas"
)

func TestTopics(t *testing.T) {
	t.Parallel()
	topics, err := schemas.Topics()
	require.NoError(t, err)
	require.Equal(t, []string{"audit-trail", "job-lifecycle", "job-metrics", "notifications", "system-health"}, topics)
}

func TestEveryVersionIsAnAvroRecordWithEnvelope(t *testing.T) {
	t.Parallel()
	topics, err := schemas.Topics()
	require.NoError(t, err)
	for _, topic := range topics {
		vs, err := schemas.Versions(topic)
		require.NoError(t, err)
		latest, err := schemas.Latest(topic)
		require.NoError(t, err)
		require.Equal(t, vs[len(vs)-1], latest)
		for _, v := range vs {
			var doc struct {
				Type      string `json:"type"`
				Namespace string `json:"namespace"`
				Doc       string `json:"doc"`
				Fields    []struct {
					Name string `json:"name"`
					Doc  string `json:"doc"`
				} `json:"fields"`
			}
			require.NoError(t, json.Unmarshal(v.Schema, &doc), v.Path)
			require.Equal(t, "record", doc.Type, v.Path)
			require.Equal(t, "org.cosmichorizons.fleet.events", doc.Namespace, v.Path)
			require.NotEmpty(t, doc.Doc, v.Path)
			var names []string
			for _, f := range doc.Fields {
				require.NotEmpty(t, f.Doc, "%s field %s has no doc", v.Path, f.Name)
				names = append(names, f.Name)
			}
			require.Equal(t, []string{"event_id", "event_type", "occurred_at", "correlation_id", "causation_id",
				"user_id", "producer", "schema_version", "sequence", "tags", "payload"}, names, v.Path)
		}
	}
}

func TestVersionsIn(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		want    []int
		wantErr string
	}{
		{name: "sorted numerically", fsys: fstest.MapFS{
			"avro/t/v10.avsc": file("10"), "avro/t/v2.avsc": file("2"), "avro/t/v1.avsc": file("1"),
			"avro/t/v3.avsc": file("3"), "avro/t/v4.avsc": file("4"), "avro/t/v5.avsc": file("5"), "avro/t/v6.avsc": file("6"),
			"avro/t/v7.avsc": file("7"), "avro/t/v8.avsc": file("8"), "avro/t/v9.avsc": file("9"), "avro/t/README": file("x"),
		}, want: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "gap", fsys: fstest.MapFS{"avro/t/v1.avsc": file("1"), "avro/t/v3.avsc": file("3")}, wantErr: "without gaps"},
		{name: "bad name", fsys: fstest.MapFS{"avro/t/v01.avsc": file("1")}, wantErr: "want v<N>.avsc"},
		{name: "empty", fsys: fstest.MapFS{"avro/t/x.txt": file("1")}, wantErr: "no schema versions"},
		{name: "missing topic", fsys: fstest.MapFS{"avro/u/v1.avsc": file("1")}, wantErr: "list schema versions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vs, err := schemas.VersionsIn(tt.fsys, "t")
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			var got []int
			for _, v := range vs {
				got = append(got, v.Version)
				require.Equal(t, "avro/t/v"+string(v.Schema)+".avsc", v.Path)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestLatestVersion(t *testing.T) {
	t.Parallel()
	n, err := schemas.LatestVersion("job-lifecycle")
	require.NoError(t, err)
	latest, err := schemas.Latest("job-lifecycle")
	require.NoError(t, err)
	require.Equal(t, latest.Version, n)
	_, err = schemas.LatestVersion("no-such-topic")
	require.Error(t, err)
}
