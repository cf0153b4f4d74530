package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/kafkabus"
	"github.com/cosmic-horizons/fleet/libs/kafkabus/kafkabustest"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

const exportTestSecret = "chctl-audit-export-test-secret-0123456789"

// startAuditor runs the compliance-auditor binary on fresh topics, feeds it n
// audit.action_recorded events through real Kafka and returns its gRPC
// address and the public key file of its checkpoints.
func startAuditor(t *testing.T, n int) (addr, pubFile string) {
	t.Helper()
	brokers := testinfra.KafkaBrokers(t)
	auditTopic, jobTopic := kafkabustest.Name("audit-trail-chctl"), kafkabustest.Name("job-lifecycle-chctl")
	alertTopic := kafkabustest.Name("system-health-chctl")
	kafkabustest.TopicsWithDLQ(t, brokers, 2, auditTopic, jobTopic, alertTopic)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	codec, err := events.NewCodec()
	require.NoError(t, err)
	producer, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(kafkabus.Connection{Brokers: brokers}), slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	defer producer.Close()
	for i := range n {
		job := fmt.Sprintf("job-%03d", i)
		ev, err := events.NewEvent(events.AuditActionRecorded{
			AuditID: "aud-" + job, Action: events.AuditActionCancel, ActorUserID: "u-grace", ActorRole: "user",
			ResourceType: "job", ResourceID: job, Before: map[string]string{"status": "RUNNING"},
			After: map[string]string{"status": "CANCELLED"}, Outcome: events.AuditOutcomeSuccess,
		}, events.Meta{Producer: "job-orchestrator", UserID: "u-grace"})
		require.NoError(t, err)
		msg, err := codec.Message(ev)
		require.NoError(t, err)
		msg.Topic = auditTopic
		require.NoError(t, producer.Publish(ctx, msg))
	}

	pub, priv, err := auditchain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	pubPEM, err := auditchain.MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	pubFile = filepath.Join(t.TempDir(), "audit.pub.pem")
	require.NoError(t, os.WriteFile(pubFile, pubPEM, 0o600))

	p := servicetest.RunBinary(t, "../../../services/compliance-auditor/cmd/compliance-auditor", map[string]string{
		"DATABASE_URL":  "sqlite://" + filepath.Join(t.TempDir(), "audit.db"),
		"KAFKA_BROKERS": strings.Join(brokers, ","), "AUDIT_TOPICS": auditTopic + "," + jobTopic,
		"AUDIT_ALERT_TOPIC": alertTopic, "AUDIT_CONSUMER_GROUP": kafkabustest.Name("compliance-auditor-chctl"),
		"AUDIT_CHECKPOINT_INTERVAL": "200ms", "AUDIT_SIGNING_KEY": base64.StdEncoding.EncodeToString(priv.Seed()),
		"AUTH_HS256_SECRET": exportTestSecret, "LOG_LEVEL": "info",
	})
	return p.GRPCAddr, pubFile
}

func exportToken(t *testing.T, admin bool) string {
	t.Helper()
	tok, err := auth.NewHS256Token(exportTestSecret, "u-ops", admin, time.Hour)
	require.NoError(t, err)
	return tok
}

// runSplit runs the command line and returns its stdout, stderr and error.
func runSplit(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// headerKeyID is the checkpoint key the export file's header names.
func headerKeyID(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	h, err := auditchain.NewReader(bytes.NewReader(data), auditchain.ReaderOptions{}).Header()
	require.NoError(t, err)
	return h.KeyID
}

func TestAuditExportFromTheServiceVerifiesOffline(t *testing.T) {
	const n = 30
	addr, pubFile := startAuditor(t, n)
	dir := t.TempDir()
	file := filepath.Join(dir, "trail.ndjson")
	admin := exportToken(t, true)

	// Wait until the whole stream is appended and a checkpoint covers its
	// head. The header names the newest checkpoint's key as of the start of
	// the export: a checkpoint signed between that lookup and the stream is
	// in the file while the header names none, so export again until both
	// agree.
	var verified string
	require.Eventually(t, func() bool {
		if _, _, err := runSplit("audit", "export", "-addr", addr, "-token", admin, "-out", file, "-q"); err != nil {
			t.Logf("export: %v", err)
			return false
		}
		out, errOut, err := runSplit("audit", "verify", "-pubkey", pubFile, file)
		verified = out
		return err == nil && strings.Contains(out, fmt.Sprintf("records 1..%d", n)) && errOut == "" && headerKeyID(t, file) != ""
	}, 60*time.Second, 300*time.Millisecond, "export never held all %d records under a checkpoint named in its header: %s", n, verified)
	_, err := os.Stat(file + ".partial")
	require.ErrorIs(t, err, os.ErrNotExist, "the partial file is renamed away")

	// The file is the trail: one header, n records, at least one checkpoint.
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	r := auditchain.NewReader(bytes.NewReader(data), auditchain.ReaderOptions{})
	h, err := r.Header()
	require.NoError(t, err)
	require.Equal(t, auditchain.ExportFormat, h.Format)
	require.NotEmpty(t, h.KeyID, "the header names the checkpoint key")
	var records, checkpoints int
	for e, err := range r.Entries() {
		require.NoError(t, err)
		if e.Record != nil {
			records++
			require.Equal(t, "u-grace", e.Record.Actor)
		} else {
			checkpoints++
		}
	}
	require.Equal(t, n, records)
	require.Positive(t, checkpoints)

	t.Run("tampering with the file is caught offline", func(t *testing.T) {
		lines := strings.Split(string(data), "\n")
		line := -1
		for i, l := range lines {
			if strings.Contains(l, `"sequence":17,`) && strings.Contains(l, `"type":"record"`) {
				line = i
			}
		}
		require.NotEqual(t, -1, line)
		lines[line] = strings.Replace(lines[line], "job-", "jab-", 1)
		bad := filepath.Join(dir, "tampered.ndjson")
		require.NoError(t, os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o600))
		out, _, err := runSplit("audit", "verify", "-pubkey", pubFile, bad)
		require.ErrorIs(t, err, errAuditNotVerified)
		require.Contains(t, out, "FAIL at sequence 17: hash mismatch")
	})

	t.Run("a range to stdout", func(t *testing.T) {
		out, errOut, err := runSplit("audit", "export", "-addr", addr, "-token", admin, "-from", "5", "-to", "12", "-out", "-")
		require.NoError(t, err, errOut)
		var seqs []uint64
		for e, err := range auditchain.NewReader(strings.NewReader(out), auditchain.ReaderOptions{}).Entries() {
			require.NoError(t, err)
			if e.Record != nil {
				seqs = append(seqs, e.Record.Sequence)
			}
		}
		// A range starts at the newest checkpoint below -from, so that its
		// first record links to a signed head; here that is the chain's start.
		require.NotEmpty(t, seqs)
		require.LessOrEqual(t, seqs[0], uint64(5))
		require.Equal(t, uint64(12), seqs[len(seqs)-1])
		for i := 1; i < len(seqs); i++ {
			require.Equal(t, seqs[i-1]+1, seqs[i], "contiguous")
		}
		require.Contains(t, errOut, fmt.Sprintf("exported %d records", len(seqs)))
		rangeFile := filepath.Join(dir, "range.ndjson")
		require.NoError(t, os.WriteFile(rangeFile, []byte(out), 0o600))
		vout, _, err := runSplit("audit", "verify", "-pubkey", pubFile, rangeFile)
		require.NoError(t, err, vout)
		require.Contains(t, vout, fmt.Sprintf("records %d..12", seqs[0]))
	})

	t.Run("refused calls and bad flags write nothing", func(t *testing.T) {
		for name, tc := range map[string]struct {
			args  []string
			want  string
			usage bool
		}{
			"not an admin":  {[]string{"-token", exportToken(t, false)}, "PermissionDenied", false},
			"bad token":     {[]string{"-token", "not-a-jwt"}, "Unauthenticated", false},
			"no token":      {[]string{"-token", ""}, "no token", true},
			"to below from": {[]string{"-token", admin, "-from", "9", "-to", "3"}, "-to must not be below -from", true},
			"negative":      {[]string{"-token", admin, "-from", "-1"}, "must not be negative", true},
			"stray arg":     {[]string{"-token", admin, "extra"}, "unexpected argument extra", true},
		} {
			t.Run(name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "x.ndjson")
				_, _, err := runSplit(append([]string{"audit", "export", "-addr", addr, "-out", out}, tc.args...)...)
				require.ErrorContains(t, err, tc.want)
				var usage usageError
				require.Equal(t, tc.usage, errors.As(err, &usage))
				entries, err := os.ReadDir(filepath.Dir(out))
				require.NoError(t, err)
				require.Empty(t, entries, "nothing is left behind")
			})
		}
		_, _, err := runSplit("audit", "export", "-addr", addr, "-token", admin)
		require.ErrorContains(t, err, "-out is required")
	})
}
