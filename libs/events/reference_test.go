package events_test

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
)

// referenceSchema is one row of testdata/reference-fingerprints.tsv, written by
// tools/interop/regen-fingerprints.sh from Apache Avro's Java reference
// implementation (SchemaNormalization) and fastavro.
type referenceSchema struct {
	path, java, fastavro, canonical string
}

func loadReference(t *testing.T) []referenceSchema {
	t.Helper()
	f, err := os.Open("testdata/reference-fingerprints.tsv")
	require.NoError(t, err)
	defer f.Close()
	var out []referenceSchema
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		require.Len(t, cols, 4, "row %q", sc.Text())
		out = append(out, referenceSchema{cols[0], cols[1], cols[2], cols[3]})
	}
	require.NoError(t, sc.Err())
	return out
}

// headerHex is a fingerprint as the single-object header carries it.
func headerHex(fp uint64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], fp)
	return hex.EncodeToString(b[:])
}

func TestFingerprintsMatchReferenceImplementations(t *testing.T) {
	t.Parallel()
	ref := loadReference(t)
	listed := map[string]bool{}
	for _, r := range ref {
		listed[r.path] = true
	}
	// Every schema file of the repository has its reference row.
	files, err := filepath.Glob("../../schemas/avro/*/v*.avsc")
	require.NoError(t, err)
	fixtures, err := filepath.Glob("testdata/evolution/avro/*/v*.avsc")
	require.NoError(t, err)
	for _, f := range files {
		require.True(t, listed[strings.TrimPrefix(f, "../../")], "%s has no row: run tools/interop/regen-fingerprints.sh", f)
	}
	for _, f := range fixtures {
		require.True(t, listed["libs/events/"+f], "%s has no row: run tools/interop/regen-fingerprints.sh", f)
	}
	for _, r := range ref {
		t.Run(r.path, func(t *testing.T) {
			require.Equal(t, r.java, r.fastavro, "the two reference implementations disagree")
			src, err := os.ReadFile(filepath.Join("../..", r.path))
			require.NoError(t, err)
			s, err := avroschema.Parse(src)
			require.NoError(t, err)
			require.Equal(t, r.canonical, avroschema.CanonicalForm(s))
			require.Equal(t, r.java, headerHex(avroschema.Fingerprint64(s)))
		})
	}
}

func TestEncodedHeaderCarriesTheReferenceFingerprint(t *testing.T) {
	t.Parallel()
	byPath := map[string]string{}
	for _, r := range loadReference(t) {
		byPath[r.path] = r.java
	}
	c, err := events.NewCodec()
	require.NoError(t, err)
	for _, p := range samplePayloads() {
		ev := sampleEvent(t, p)
		b, err := c.Encode(ev)
		require.NoError(t, err)
		v, _ := c.WriterVersion(ev.Topic())
		want := byPath[fmt.Sprintf("schemas/avro/%s/v%d.avsc", ev.Topic(), v)]
		require.NotEmpty(t, want)
		require.Equal(t, want, hex.EncodeToString(b[2:10]), p.EventType())
	}
}
