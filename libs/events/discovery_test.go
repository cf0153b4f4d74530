package events_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
)

// mapSource is a SchemaSource over a map, standing in for the registry topic
// (which libs/kafkabus tests against Kafka).
type mapSource struct {
	schemas map[uint64]events.Schema
	err     error
	calls   int
}

func (m *mapSource) LookupSchema(fp uint64) (events.Schema, error) {
	m.calls++
	if m.err != nil {
		return events.Schema{}, m.err
	}
	s, ok := m.schemas[fp]
	if !ok {
		return events.Schema{}, fmt.Errorf("fingerprint %x: %w", fp, events.ErrSchemaNotFound)
	}
	return s, nil
}

func TestNewerWriterSchemaIsDiscoveredAndResolved(t *testing.T) {
	t.Parallel()
	writerV2 := newCodec(t, events.CodecConfig{Schemas: evolution})
	ev := sampleEvent(t, samplePayloads()[3]) // job.completed, which v2 extends
	b, err := writerV2.Encode(ev)
	require.NoError(t, err)
	fp, err := events.Fingerprint(b)
	require.NoError(t, err)
	v2, ok := writerV2.SchemaByFingerprint(fp)
	require.True(t, ok)
	require.Equal(t, 2, v2.Version)

	t.Run("without a source the fingerprint is unknown and permanent", func(t *testing.T) {
		t.Parallel()
		readerV1 := newCodec(t, events.CodecConfig{})
		_, err := readerV1.Decode(events.TopicJobLifecycle, b)
		require.ErrorContains(t, err, "unknown schema fingerprint "+events.FingerprintHex(fp))
		require.True(t, bus.IsPermanent(events.DecodeFailure(err)))
	})
	t.Run("found in the source, read as v1 and compiled once", func(t *testing.T) {
		t.Parallel()
		src := &mapSource{schemas: map[uint64]events.Schema{fp: v2}}
		readerV1 := newCodec(t, events.CodecConfig{Source: src})
		for range 3 {
			got, err := readerV1.Decode(events.TopicJobLifecycle, b)
			require.NoError(t, err)
			want := ev
			want.SchemaVersion = 2
			require.Equal(t, want, got)
		}
		require.Equal(t, 1, src.calls)
	})
	t.Run("not in the source: permanent", func(t *testing.T) {
		t.Parallel()
		readerV1 := newCodec(t, events.CodecConfig{Source: &mapSource{}})
		_, err := readerV1.Decode(events.TopicJobLifecycle, b)
		require.ErrorIs(t, err, events.ErrSchemaNotFound)
		require.True(t, bus.IsPermanent(events.DecodeFailure(err)))
	})
	t.Run("source unreachable: transient", func(t *testing.T) {
		t.Parallel()
		readerV1 := newCodec(t, events.CodecConfig{Source: &mapSource{err: errors.New("kafka: client has run out of available brokers")}})
		_, err := readerV1.Decode(events.TopicJobLifecycle, b)
		require.ErrorIs(t, err, events.ErrSchemaUnavailable)
		require.False(t, bus.IsPermanent(events.DecodeFailure(err)))
	})
	t.Run("a schema registered under another fingerprint is refused", func(t *testing.T) {
		t.Parallel()
		wrong := v2
		wrong.JSON = []byte(strings.Replace(string(v2.JSON), `"name": "site"`, `"name": "place"`, 1))
		readerV1 := newCodec(t, events.CodecConfig{Source: &mapSource{schemas: map[uint64]events.Schema{fp: wrong}}})
		_, err := readerV1.Decode(events.TopicJobLifecycle, b)
		require.ErrorContains(t, err, "has fingerprint")
		require.True(t, bus.IsPermanent(events.DecodeFailure(err)))
	})
	t.Run("a schema the reader cannot resolve is refused", func(t *testing.T) {
		t.Parallel()
		other, ok := newCodec(t, events.CodecConfig{}).SchemaByFingerprint(mustFingerprint(t, events.TopicJobMetrics))
		require.True(t, ok)
		readerV1 := newCodec(t, events.CodecConfig{Source: &mapSource{schemas: map[uint64]events.Schema{other.Fingerprint: other}}})
		forged := append([]byte(nil), b...)
		copy(forged[2:10], headerBytes(other.Fingerprint))
		_, err := readerV1.Decode(events.TopicJobLifecycle, forged)
		require.ErrorContains(t, err, "of topic job-metrics")
	})
}

func mustFingerprint(t *testing.T, topic string) uint64 {
	t.Helper()
	for _, s := range newCodec(t, events.CodecConfig{}).Schemas() {
		if s.Topic == topic {
			return s.Fingerprint
		}
	}
	t.Fatalf("no schema for %s", topic)
	return 0
}

func headerBytes(fp uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(fp >> (8 * i))
	}
	return b
}

func TestSchemasListsEveryEmbeddedVersion(t *testing.T) {
	t.Parallel()
	got := newCodec(t, events.CodecConfig{Schemas: evolution}).Schemas()
	require.Len(t, got, 2)
	for i, s := range got {
		require.Equal(t, events.TopicJobLifecycle, s.Topic)
		require.Equal(t, i+1, s.Version)
		want, err := os.ReadFile(fmt.Sprintf("testdata/evolution/avro/job-lifecycle/v%d.avsc", i+1))
		require.NoError(t, err)
		require.Equal(t, want, s.JSON)
	}
}

// Events written before the fleet used the specification's fingerprint carry
// goavro's (testdata/legacy, written by the earlier release's encoder); a
// reader of this release still decodes them.
func TestEventsWithTheLegacyFingerprintStillDecode(t *testing.T) {
	t.Parallel()
	c := newCodec(t, events.CodecConfig{})
	files, err := filepath.Glob("testdata/legacy/*.bin")
	require.NoError(t, err)
	require.Len(t, files, len(events.PayloadTypes()))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			topic, eventType, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".bin"), "__")
			fp, err := events.Fingerprint(b)
			require.NoError(t, err)
			_, current := c.SchemaByFingerprint(fp)
			require.False(t, current, "the file carries the legacy fingerprint")
			ev, err := c.Decode(topic, b)
			require.NoError(t, err)
			require.Equal(t, eventType, ev.EventType)
			for _, p := range samplePayloads() {
				if p.EventType() == eventType {
					want := sampleEvent(t, p)
					want.EventID = ev.EventID // fresh per sample
					require.Equal(t, int32(1), ev.SchemaVersion, "the earlier release wrote v1")
					want.SchemaVersion = ev.SchemaVersion
					require.Equal(t, want, ev)
				}
			}
		})
	}
}
