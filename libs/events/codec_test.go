package events_test

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/linkedin/goavro/v2"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
)

func newCodec(t testing.TB, cfg events.CodecConfig) *events.Codec {
	t.Helper()
	c, err := events.NewCodecWithConfig(cfg)
	require.NoError(t, err)
	return c
}

func TestCodecRoundTripEveryEventType(t *testing.T) {
	t.Parallel()
	c, err := events.NewCodec()
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, p := range samplePayloads() {
		t.Run(p.EventType(), func(t *testing.T) {
			ev := sampleEvent(t, p)
			b, err := c.Encode(ev)
			require.NoError(t, err)
			require.Equal(t, []byte{0xC3, 0x01}, b[:2])
			got, err := c.Decode(ev.Topic(), b)
			require.NoError(t, err)
			require.Equal(t, ev, got)
		})
		seen[p.EventType()] = true
	}
	require.Len(t, seen, len(events.PayloadTypes()), "one sample per payload type")
}

func TestCodecRoundTripZeroValues(t *testing.T) {
	t.Parallel()
	c := newCodec(t, events.CodecConfig{})
	ev := sampleEvent(t, events.JobQueued{JobID: "j", FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued})
	ev.Tags = nil
	ev.CausationID = nil
	b, err := c.Encode(ev)
	require.NoError(t, err)
	got, err := c.Decode(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	require.Equal(t, ev, got)
}

func TestEncodeWritesSchemaVersionAndFingerprint(t *testing.T) {
	t.Parallel()
	c := newCodec(t, events.CodecConfig{})
	ev := sampleEvent(t, samplePayloads()[0])
	ev.SchemaVersion = 99
	b, err := c.Encode(ev)
	require.NoError(t, err)
	got, err := c.Decode(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	v, ok := c.WriterVersion(events.TopicJobLifecycle)
	require.True(t, ok)
	require.Equal(t, int32(v), got.SchemaVersion)

	schema, err := os.ReadFile(fmt.Sprintf("../../schemas/avro/job-lifecycle/v%d.avsc", v))
	require.NoError(t, err)
	g, err := goavro.NewCodec(string(schema))
	require.NoError(t, err)
	s, err := avroschema.Parse(schema)
	require.NoError(t, err)
	fp, err := events.Fingerprint(b)
	require.NoError(t, err)
	require.Equal(t, avroschema.Fingerprint64(s), fp, "the specification's fingerprint, not goavro's Rabin")
	require.NotEqual(t, g.Rabin, fp, "goavro's canonical form keeps logical types; the fleet writes the specification's")
	// The body is plain Avro binary that goavro reads with the same schema.
	_, rest, err := g.NativeFromBinary(b[10:])
	require.NoError(t, err)
	require.Empty(t, rest)
}

func TestEncodeRejects(t *testing.T) {
	t.Parallel()
	c := newCodec(t, events.CodecConfig{})
	tests := []struct {
		name    string
		ev      events.Event
		wantErr string
	}{
		{name: "invalid envelope", ev: func() events.Event { e := sampleEvent(t, samplePayloads()[1]); e.Producer = ""; return e }(), wantErr: "producer"},
		{name: "unknown enum symbol", ev: func() events.Event {
			e := sampleEvent(t, samplePayloads()[1])
			q := e.Payload.(events.JobQueued)
			q.ToStatus = "EXPLODED"
			e.Payload = q
			return e
		}(), wantErr: "EXPLODED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.Encode(tt.ev)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	c := newCodec(t, events.CodecConfig{MaxMessageSize: 4096})
	valid, err := c.Encode(sampleEvent(t, samplePayloads()[3]))
	require.NoError(t, err)
	withFP := func(fp uint64) []byte {
		b := append([]byte(nil), valid...)
		binary.LittleEndian.PutUint64(b[2:], fp)
		return b
	}
	metricsFP, err := c.Encode(sampleEvent(t, samplePayloads()[6]))
	require.NoError(t, err)
	tests := []struct {
		name    string
		topic   string
		b       []byte
		wantErr string
	}{
		{name: "empty", topic: events.TopicJobLifecycle, b: nil, wantErr: "shorter than"},
		{name: "wrong magic", topic: events.TopicJobLifecycle, b: append([]byte{0x4f, 0x62}, valid[2:]...), wantErr: "not Avro single-object"},
		{name: "unknown fingerprint", topic: events.TopicJobLifecycle, b: withFP(0xdeadbeef), wantErr: "unknown schema fingerprint efbeadde00000000"},
		{name: "fingerprint of another topic", topic: events.TopicJobLifecycle, b: withFP(binary.LittleEndian.Uint64(metricsFP[2:10])), wantErr: "of topic job-metrics"},
		{name: "unknown topic", topic: "nope", b: valid, wantErr: "unknown topic"},
		{name: "truncated", topic: events.TopicJobLifecycle, b: valid[:len(valid)-3], wantErr: "decode job-lifecycle"},
		{name: "trailing bytes", topic: events.TopicJobLifecycle, b: append(append([]byte(nil), valid...), 0), wantErr: "trailing"},
		{name: "too large", topic: events.TopicJobLifecycle, b: make([]byte, 5000), wantErr: "exceeds the limit"},
		{name: "huge string length", topic: events.TopicJobLifecycle, b: append(append([]byte(nil), valid[:10]...), 0xfe, 0xff, 0xff, 0xff, 0x0f), wantErr: "cannot decode binary string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := c.Decode(tt.topic, tt.b)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// evolution is a test-only tree where job-lifecycle v2 adds two fields
// with defaults to JobCompleted: result_size_bytes (nullable) and site.
var evolution = os.DirFS("testdata/evolution")

func completedV2Fields(t *testing.T, native map[string]any) map[string]any {
	t.Helper()
	payload := native["payload"].(map[string]any)
	return payload["org.cosmichorizons.fleet.events.JobCompleted"].(map[string]any)
}

func TestOldWriterNewReader(t *testing.T) {
	t.Parallel()
	writerV1 := newCodec(t, events.CodecConfig{Schemas: evolution, WriterVersions: map[string]int{events.TopicJobLifecycle: 1}})
	ev := sampleEvent(t, samplePayloads()[3])
	b, err := writerV1.Encode(ev)
	require.NoError(t, err)

	readerV2 := newCodec(t, events.CodecConfig{Schemas: evolution})
	got, err := readerV2.Decode(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	ev.SchemaVersion = 1 // the writer's version, whatever the embedded latest is
	require.Equal(t, ev, got)

	native, err := readerV2.DecodeNative(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	fields := completedV2Fields(t, native)
	require.Contains(t, fields, "result_size_bytes")
	require.Nil(t, fields["result_size_bytes"], "missing in writer: reader default null")
	require.Equal(t, "tacc", fields["site"], "missing in writer: reader default")
}

func TestNewWriterOldReader(t *testing.T) {
	t.Parallel()
	readerV2 := newCodec(t, events.CodecConfig{Schemas: evolution})
	ev := sampleEvent(t, samplePayloads()[3])
	v2, err := readerV2.Encode(ev)
	require.NoError(t, err)
	// Set the new fields to non-default values with goavro and the v2 schema.
	native, err := readerV2.DecodeNative(events.TopicJobLifecycle, v2)
	require.NoError(t, err)
	fields := completedV2Fields(t, native)
	fields["result_size_bytes"] = map[string]any{"long": int64(4096)}
	fields["site"] = "lonestar"
	schema, err := os.ReadFile(filepath.Join("testdata/evolution/avro/job-lifecycle/v2.avsc"))
	require.NoError(t, err)
	g, err := goavro.NewCodec(string(schema))
	require.NoError(t, err)
	b, err := g.BinaryFromNative(append([]byte(nil), v2[:10]...), native)
	require.NoError(t, err)

	readerV1 := newCodec(t, events.CodecConfig{Schemas: evolution, ReaderVersions: map[string]int{events.TopicJobLifecycle: 1}})
	ev.SchemaVersion = 2
	got, err := readerV1.Decode(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	require.Equal(t, ev, got)
	old, err := readerV1.DecodeNative(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	require.NotContains(t, completedV2Fields(t, old), "site", "unknown to the reader: dropped")

	back, err := readerV2.DecodeNative(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	require.Equal(t, "lonestar", completedV2Fields(t, back)["site"])
	require.Equal(t, map[string]any{"long": int64(4096)}, completedV2Fields(t, back)["result_size_bytes"])
}

func TestCodecConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     events.CodecConfig
		wantErr string
	}{
		{name: "negative size", cfg: events.CodecConfig{MaxMessageSize: -1}, wantErr: "max message size"},
		{name: "missing writer version", cfg: events.CodecConfig{WriterVersions: map[string]int{events.TopicAuditTrail: 7}}, wantErr: "writer version 7"},
		{name: "missing reader version", cfg: events.CodecConfig{Schemas: evolution, ReaderVersions: map[string]int{events.TopicJobLifecycle: 3}}, wantErr: "reader version 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := events.NewCodecWithConfig(tt.cfg)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the FuzzDecode seed corpus in testdata/fuzz")

// fuzzSeeds are valid encodings of every event type and broken variants.
func fuzzSeeds(t testing.TB) map[string][]byte {
	c, err := events.NewCodec()
	require.NoError(t, err)
	seeds := map[string][]byte{}
	for _, p := range samplePayloads() {
		b, err := c.Encode(sampleEvent(t, p))
		require.NoError(t, err)
		seeds["valid-"+p.EventType()] = b
	}
	b := seeds["valid-"+events.TypeJobRunning]
	seeds["truncated-header"] = b[:6]
	seeds["truncated-body"] = b[:len(b)/2]
	seeds["wrong-magic"] = append([]byte{0xC3, 0x02}, b[2:]...)
	wrongFP := append([]byte(nil), b...)
	wrongFP[5] ^= 0xff
	seeds["wrong-fingerprint"] = wrongFP
	huge := append([]byte(nil), b[:10]...)
	seeds["huge-string-length"] = append(huge, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	// A JobRunning with a node_list block count of 2^31 and nothing after it.
	arr := append([]byte(nil), b[:10]...)
	seeds["huge-array-count"] = append(arr, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x80, 0x80, 0x80, 0x80, 0x10)
	return seeds
}

func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	seeds := fuzzSeeds(t)
	if *updateCorpus {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for name, b := range seeds {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644))
		}
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(entries), len(seeds), "run go test -run TestFuzzCorpus -update-corpus")
	for name := range seeds {
		_, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err, "seed %s missing from the corpus", name)
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	c, err := events.NewCodec()
	require.NoError(f, err)
	topics := []string{events.TopicJobLifecycle, events.TopicJobMetrics, events.TopicNotifications, events.TopicAuditTrail, events.TopicSystemHealth}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, topic := range topics {
			ev, err := c.Decode(topic, b)
			if err != nil {
				continue
			}
			// Whatever decodes must encode again and read back the same.
			again, err := c.Encode(ev)
			require.NoError(t, err)
			_, err = c.Decode(topic, again)
			require.NoError(t, err)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	c := newCodec(b, events.CodecConfig{})
	ev := sampleEvent(b, samplePayloads()[3])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Encode(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	c := newCodec(b, events.CodecConfig{})
	msg, err := c.Encode(sampleEvent(b, samplePayloads()[3]))
	require.NoError(b, err)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decode(events.TopicJobLifecycle, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeJSONIsAvroJSON(t *testing.T) {
	t.Parallel()
	c := newCodec(t, events.CodecConfig{})
	ev := sampleEvent(t, samplePayloads()[3])
	b, err := c.Encode(ev)
	require.NoError(t, err)
	for _, topic := range []string{events.TopicJobLifecycle, events.DLQTopic(events.TopicJobLifecycle)} {
		text, writer, err := c.DecodeJSON(topic, b)
		require.NoError(t, err)
		require.Equal(t, events.TopicJobLifecycle, writer.Topic)
		require.Equal(t, 2, writer.Version, "the latest job-lifecycle schema")
		var doc map[string]any
		require.NoError(t, json.Unmarshal(text, &doc))
		require.Equal(t, ev.EventID, doc["event_id"])
		require.Equal(t, map[string]any{"string": "cmd-9"}, doc["causation_id"], "a union as Avro JSON")
		payload := doc["payload"].(map[string]any)["org.cosmichorizons.fleet.events.JobCompleted"].(map[string]any)
		require.Equal(t, "s3://out/j1", payload["output_location"])
	}
}

// job-metrics v2 adds seff's efficiencies; a v1 reader drops them, a v2
// reader of v1 data finds them absent.
func TestJobMetricsEfficienciesAcrossVersions(t *testing.T) {
	t.Parallel()
	cpu, mem := 23.26, 12.49
	ev := sampleEvent(t, events.JobMetricsRecorded{JobID: "j", TaccSystem: events.TaccSystemFrontera, UserID: "u", Agent: "AlphaCal",
		RunTimeMS: 6000, CPUTimeMS: ptr(int64(1396)), MaxRSSBytes: ptr(int64(33529856)), CPUEfficiencyPercent: &cpu, MemoryEfficiencyPercent: &mem, Final: true})
	v2 := newCodec(t, events.CodecConfig{})
	b, err := v2.Encode(ev)
	require.NoError(t, err)
	got, err := v2.Decode(events.TopicJobMetrics, b)
	require.NoError(t, err)
	require.Equal(t, ev, got)

	v1 := newCodec(t, events.CodecConfig{ReaderVersions: map[string]int{events.TopicJobMetrics: 1}})
	old, err := v1.Decode(events.TopicJobMetrics, b)
	require.NoError(t, err)
	p := old.Payload.(events.JobMetricsRecorded)
	require.Nil(t, p.CPUEfficiencyPercent, "v1 has no such field")
	require.Equal(t, int64(1396), *p.CPUTimeMS)

	v1Writer := newCodec(t, events.CodecConfig{WriterVersions: map[string]int{events.TopicJobMetrics: 1}})
	b1, err := v1Writer.Encode(ev)
	require.NoError(t, err)
	fromV1, err := v2.Decode(events.TopicJobMetrics, b1)
	require.NoError(t, err)
	require.Nil(t, fromV1.Payload.(events.JobMetricsRecorded).MemoryEfficiencyPercent, "the v2 default for v1 data")
}

// job-lifecycle v2 adds resubmitted_from to job.submitted; a v1 reader
// drops it, a v2 reader of v1 data finds it absent.
func TestJobSubmittedResubmittedFromAcrossVersions(t *testing.T) {
	t.Parallel()
	from, key := "0195f2a0-7c1e-7b3a-9c4d-000000000001", "k-1"
	p := events.JobSubmitted{JobID: "j2", UserID: "u", JobName: "n", Agent: "Custom", TaccSystem: events.TaccSystemFrontera,
		Partition: "normal", Priority: events.JobPriorityNormal, IdempotencyKey: &key, ResubmittedFrom: &from, ToStatus: events.JobStatusSubmitted}
	ev := sampleEvent(t, p)
	v2 := newCodec(t, events.CodecConfig{})
	b, err := v2.Encode(ev)
	require.NoError(t, err)
	got, err := v2.Decode(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	require.Equal(t, ev, got)
	require.Equal(t, from, *got.Payload.(events.JobSubmitted).ResubmittedFrom)

	v1 := newCodec(t, events.CodecConfig{ReaderVersions: map[string]int{events.TopicJobLifecycle: 1}})
	old, err := v1.Decode(events.TopicJobLifecycle, b)
	require.NoError(t, err)
	require.Nil(t, old.Payload.(events.JobSubmitted).ResubmittedFrom, "v1 has no such field")
	require.Equal(t, key, *old.Payload.(events.JobSubmitted).IdempotencyKey)

	v1Writer := newCodec(t, events.CodecConfig{WriterVersions: map[string]int{events.TopicJobLifecycle: 1}})
	b1, err := v1Writer.Encode(ev)
	require.NoError(t, err)
	fromV1, err := v2.Decode(events.TopicJobLifecycle, b1)
	require.NoError(t, err)
	require.Nil(t, fromV1.Payload.(events.JobSubmitted).ResubmittedFrom, "the v2 default for v1 data")
}
