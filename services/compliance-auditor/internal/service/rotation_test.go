package service_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auditchain/chainpb"
	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
)

// keyFiles writes a key pair as `chctl audit keygen` does and returns its signer
// and the paths of the private and the public key.
func keyFiles(t *testing.T, dir string) (*auditchain.Signer, string, string) {
	t.Helper()
	pub, priv, err := auditchain.GenerateKey(rand.Reader)
	require.NoError(t, err)
	privPEM, err := auditchain.MarshalPrivateKeyPEM(priv)
	require.NoError(t, err)
	pubPEM, err := auditchain.MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	privFile, pubFile := filepath.Join(dir, "audit-signing-key.pem"), filepath.Join(dir, "audit-signing-key.pub.pem")
	require.NoError(t, os.WriteFile(privFile, privPEM, 0o600))
	require.NoError(t, os.WriteFile(pubFile, pubPEM, 0o644))
	s, err := auditchain.NewSigner(priv)
	require.NoError(t, err)
	return s, privFile, pubFile
}

// TestKeyRotationProcedure follows "Rotate keys" of docs/operations.md with
// the auditor binary: its trail is checkpointed with key A; the auditor is
// restarted with key B, first without A among the verifying keys (Verify
// fails at A's checkpoint), then with A's public key in
// AUDIT_VERIFY_KEYS_FILE (the trail verifies, B signs the new head), and the
// export verifies offline with both public keys, not with B's alone.
func TestKeyRotationProcedure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	signerA, _, pubA := keyFiles(t, filepath.Join(dir, "a"))
	signerB, privB, pubB := keyFiles(t, filepath.Join(dir, "b"))
	dbURL := "sqlite:" + filepath.Join(dir, "audit.db")

	// The trail as key A left it: 10 records under a checkpoint signed by A.
	f := audittest.New(t, sqlstoretest.OpenURL(t, dbURL))
	f.Rotate(t, signerA)
	msgs := audittest.Messages(t, f.Codec, 15)
	for _, m := range msgs[:10] {
		require.NoError(t, f.Recorder.Handle(context.Background(), m))
	}
	cp, stored, err := f.Checkpointer.Checkpoint(context.Background())
	require.NoError(t, err)
	require.True(t, stored)
	require.Equal(t, signerA.KeyID(), cp.KeyID)

	run := func(t *testing.T, env map[string]string) (*servicetest.Process, auditpb.AuditServiceClient) {
		t.Helper()
		e := noKafkaEnv(t)
		// A hundred years of retention keep the fixture's records (May 2026) in place.
		e["DATABASE_URL"], e["AUDIT_SIGNING_KEY_FILE"], e["AUDIT_RETENTION"] = dbURL, privB, "876000h"
		for k, v := range env {
			e[k] = v
		}
		p := servicetest.RunBinary(t, "../../cmd/compliance-auditor", e)
		conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return p, auditpb.NewAuditServiceClient(conn)
	}
	admin := bearer(t, authSecret, "root", true)

	// Step 3 without step 2: the old checkpoint no longer verifies.
	p, c := run(t, nil)
	res, err := c.Verify(admin, &auditpb.VerifyRequest{})
	require.NoError(t, err)
	require.False(t, res.GetOk())
	require.EqualValues(t, 10, res.GetFirstBadSequence())
	require.Contains(t, res.GetReason(), "bad checkpoint signature")
	p.Terminate(t)

	// More records arrive while the auditor is down (appended here directly).
	for _, m := range msgs[10:] {
		require.NoError(t, f.Recorder.Handle(context.Background(), m))
	}

	// Steps 2 and 3: A's public key among the verifying keys, B signs.
	p, c = run(t, map[string]string{"AUDIT_VERIFY_KEYS_FILE": pubA})
	require.Contains(t, p.Output(), signerB.KeyID())
	res, err = c.Verify(admin, &auditpb.VerifyRequest{})
	require.NoError(t, err)
	require.True(t, res.GetOk(), res.GetReason())
	require.EqualValues(t, 15, res.GetCheckedCount())
	got, err := c.GetCheckpoint(admin, &auditpb.GetCheckpointRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 15, got.GetCheckpoint().GetSequence())
	require.Equal(t, signerB.KeyID(), got.GetCheckpoint().GetKeyId(), "the new head is signed with the new key")

	// Step 4: offline, with both public keys.
	stream, err := c.Export(admin, &auditpb.ExportRequest{})
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := auditchain.NewWriter(&buf, signerB.KeyID())
	require.NoError(t, err)
	_, err = chainpb.WriteExport(stream, w, nil)
	require.NoError(t, err)
	p.Terminate(t)
	keys := func(files ...string) auditchain.KeySet {
		var ks auditchain.KeySet
		for _, file := range files {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			pubs, err := auditchain.ParsePublicKeys(data)
			require.NoError(t, err)
			for _, k := range pubs {
				require.NoError(t, ks.Add(k))
			}
		}
		return ks
	}
	_, off, err := auditchain.VerifyExport(bytes.NewReader(buf.Bytes()), auditchain.ExportVerifyOptions{Keys: keys(pubA, pubB)})
	require.NoError(t, err)
	require.True(t, off.OK, off.String())
	require.EqualValues(t, 15, off.Records)
	require.EqualValues(t, 2, off.Checkpoints)
	_, off, err = auditchain.VerifyExport(bytes.NewReader(buf.Bytes()), auditchain.ExportVerifyOptions{Keys: keys(pubB)})
	require.NoError(t, err)
	require.False(t, off.OK)
	require.Equal(t, auditchain.ReasonCheckpointSignature, off.Reason)
}
