package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/app"
	"github.com/cosmic-horizons/fleet/services/compliance-auditor/internal/audittest"
)

// checkpointsAt records messages and signs a checkpoint after record n of
// every n in at; the fixture's store ends at the last of them.
func checkpointsAt(t *testing.T, f *audittest.Fixture, at ...int) {
	t.Helper()
	msgs := audittest.Messages(t, f.Codec, at[len(at)-1])
	done := 0
	for _, n := range at {
		record(t, f, msgs[done:n])
		done = n
		_, stored, err := f.Checkpointer.Checkpoint(context.Background())
		require.NoError(t, err)
		require.True(t, stored)
	}
}

func exec(t *testing.T, f *audittest.Fixture, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		_, err := f.DB.ExecContext(context.Background(), f.DB.Rebind(s))
		require.NoError(t, err, s)
	}
}

// verifyExportOffline verifies an export as `chctl audit verify` does.
func verifyExportOffline(t *testing.T, data []byte, keys auditchain.KeySet, now time.Time) auditchain.Result {
	t.Helper()
	_, res, err := auditchain.VerifyExport(bytes.NewReader(data), auditchain.ExportVerifyOptions{Keys: keys, Retention: audittest.Retention, Now: now})
	require.NoError(t, err)
	return res
}

// TestVerifyCatchesRemovedTailWithItsCheckpoint: someone with write access to
// the database removes the newest records together with the checkpoint that
// covers them and moves the head back, leaving a chain that links and an older
// checkpoint that verifies. Verify online and the export offline both fail.
func TestVerifyCatchesRemovedTailWithItsCheckpoint(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		checkpointsAt(t, f, 8, 12)
		audittest.DropGuards(t, f.DB)
		exec(t, f,
			"DELETE FROM audit_records WHERE sequence > 9",
			"DELETE FROM audit_checkpoints WHERE sequence > 8",
			"UPDATE audit_head SET sequence = 9, hash = (SELECT hash FROM audit_records WHERE sequence = 9)")

		res, err := f.Trail.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.False(t, res.OK, "a trail missing its newest records verified")
		require.Contains(t, res.Reason, "truncated")
		require.EqualValues(t, 12, res.BadSequence, res.Reason)
		_, stored, err := f.Checkpointer.Checkpoint(ctx)
		var uv *app.UnverifiedError
		require.ErrorAs(t, err, &uv, "the checkpointer signs the shortened chain")
		require.False(t, stored)

		// A whole export refuses to seal the shortened chain.
		var buf bytes.Buffer
		w, err := auditchain.NewWriter(&buf, f.Signer.KeyID())
		require.NoError(t, err)
		require.ErrorAs(t, f.Trail.Export(ctx, 0, 0, w.Write), &uv)

		// An export taken without signing (a replica without the key, or the
		// file of a whole export cut after record 9) ends after its last
		// checkpoint and fails offline.
		buf.Reset()
		readOnly := app.NewTrail(f.Repo, nil, app.TrailConfig{Keys: f.Keys, Retention: audittest.Retention, Now: func() time.Time { return f.Now }})
		w, err = auditchain.NewWriter(&buf, f.Signer.KeyID())
		require.NoError(t, err)
		require.NoError(t, readOnly.Export(ctx, 0, 0, w.Write))
		require.NoError(t, w.Flush())
		off := verifyExportOffline(t, buf.Bytes(), f.Keys, f.Now)
		require.False(t, off.OK, "the cut export verified offline: %s", off)
		require.Equal(t, auditchain.ReasonUnsealed, off.Reason, off.String())
		require.EqualValues(t, 9, off.BadSequence)

		// Online without the signing key, the same: no checkpoint covers the head.
		ro, err := readOnly.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.False(t, ro.OK)
		require.Contains(t, ro.Reason, "head not covered by a checkpoint")
	})
}

// TestVerifyCatchesRemovedPrefixWithItsCheckpoints: the oldest records are
// removed with the checkpoints below the one left as their anchor, so the
// rest looks like a trail shortened by retention. The anchor was signed within
// the retention period, so Verify online and the export offline both fail.
func TestVerifyCatchesRemovedPrefixWithItsCheckpoints(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		checkpointsAt(t, f, 4, 8, 12)
		f.Now = f.Now.Add(audittest.Retention / 2) // all of it is younger than the retention period
		audittest.DropGuards(t, f.DB)
		exec(t, f, "DELETE FROM audit_records WHERE sequence <= 8", "DELETE FROM audit_checkpoints WHERE sequence < 8")

		res, err := f.Trail.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.False(t, res.OK, "a trail missing its oldest records verified")
		require.EqualValues(t, 8, res.BadSequence, res.Reason)
		require.Contains(t, res.Reason, "retention anchor younger than the retention period")

		var buf bytes.Buffer
		export(t, f, &buf, 0, 0)
		off := verifyExportOffline(t, buf.Bytes(), f.Keys, f.Now)
		require.False(t, off.OK, "the export verified offline: %s", off)
		require.Equal(t, auditchain.ReasonAnchorTooRecent, off.Reason, off.String())

		// Once the retention period has passed, the same anchor is a lawful one.
		f.Now = f.Now.Add(audittest.Retention)
		res, err = f.Trail.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.True(t, res.OK, res.Reason)

		// Removing the anchor too leaves nothing that vouches for record 9.
		exec(t, f, "DELETE FROM audit_checkpoints WHERE sequence = 8")
		res, err = f.Trail.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.False(t, res.OK)
		require.EqualValues(t, 1, res.BadSequence, res.Reason)
	})
}

// TestCheckpointerSignsOnlyAVerifiedHead: a record changed after the last
// checkpoint, or a head that names another hash, is not signed.
func TestCheckpointerSignsOnlyAVerifiedHead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		stmt   string
		reason auditchain.Reason
		bad    uint64
	}{
		{name: "record after the checkpoint changed", stmt: "UPDATE audit_records SET actor = 'mallory' WHERE sequence = 7",
			reason: auditchain.ReasonHashMismatch, bad: 7},
		{name: "head hash rewritten", stmt: "UPDATE audit_head SET hash = (SELECT hash FROM audit_records WHERE sequence = 2)",
			reason: auditchain.ReasonHeadMismatch, bad: 8},
		{name: "head moved past the records", stmt: "UPDATE audit_head SET sequence = 11",
			reason: auditchain.ReasonHeadMismatch, bad: 9},
		{name: "checkpoint replaced by an unsigned one", stmt: "UPDATE audit_checkpoints SET signature = prev_hash FROM (SELECT prev_hash FROM audit_records WHERE sequence = 2) p",
			reason: auditchain.ReasonCheckpointSignature, bad: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			contract(t, func(t *testing.T, f *audittest.Fixture) {
				ctx := context.Background()
				checkpointsAt(t, f, 5)
				record(t, f, audittest.Messages(t, f.Codec, 8)[5:])
				audittest.DropGuards(t, f.DB)
				exec(t, f, tt.stmt)

				_, stored, err := f.Checkpointer.Checkpoint(ctx)
				var uv *app.UnverifiedError
				require.ErrorAs(t, err, &uv)
				require.False(t, stored)
				require.Equal(t, tt.reason, uv.Result.Reason, uv.Error())
				require.Equal(t, tt.bad, uv.Result.BadSequence, uv.Error())
				latest, err := f.Trail.GetCheckpoint(ctx, 0)
				require.NoError(t, err)
				require.EqualValues(t, 5, latest.Sequence, "nothing was signed")
				res, err := f.Trail.Verify(ctx, 0, 0)
				require.NoError(t, err)
				require.False(t, res.OK)
			})
		})
	}
}

// TestKeyRotation follows the documented rotation: checkpoints signed with
// key A, the auditor switched to key B with A's public key kept among the
// verifying keys; the whole trail verifies online and its export offline.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		keyA := f.Signer
		checkpointsAt(t, f, 5, 10)
		_, privB, err := auditchain.GenerateKey(rand.Reader)
		require.NoError(t, err)
		keyB, err := auditchain.NewSigner(privB)
		require.NoError(t, err)
		f.Rotate(t, keyB)
		record(t, f, audittest.Messages(t, f.Codec, 20)[10:])
		cp, stored, err := f.Checkpointer.Checkpoint(ctx)
		require.NoError(t, err)
		require.True(t, stored)
		require.Equal(t, keyB.KeyID(), cp.KeyID)

		res, err := f.Trail.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.True(t, res.OK, res.Reason)
		require.EqualValues(t, 20, res.Checked)

		var buf bytes.Buffer
		export(t, f, &buf, 0, 0)
		off := verifyExportOffline(t, buf.Bytes(), f.Keys, f.Now)
		require.True(t, off.OK, off.String())
		require.EqualValues(t, 3, off.Checkpoints)

		// With only the new key, the checkpoints of the old one do not verify.
		onlyB, err := auditchain.NewKeySet(keyB.PublicKey())
		require.NoError(t, err)
		trailB := app.NewTrail(f.Repo, nil, app.TrailConfig{Keys: onlyB})
		res, err = trailB.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.False(t, res.OK)
		require.EqualValues(t, 5, res.BadSequence)
		require.Contains(t, res.Reason, "bad checkpoint signature")
		off = verifyExportOffline(t, buf.Bytes(), onlyB, f.Now)
		require.False(t, off.OK)
		require.Equal(t, auditchain.ReasonCheckpointSignature, off.Reason)
		require.Contains(t, off.Detail, keyA.KeyID())
		_, _, err = auditchain.VerifyExport(bytes.NewReader(buf.Bytes()), auditchain.ExportVerifyOptions{Keys: mustKeys(t, keyA)})
		require.True(t, errors.Is(err, auditchain.ErrUnknownKey), "the header names key B: %v", err)
	})
}

func mustKeys(t *testing.T, signers ...*auditchain.Signer) auditchain.KeySet {
	t.Helper()
	var ks auditchain.KeySet
	for _, s := range signers {
		require.NoError(t, ks.Add(s.PublicKey()))
	}
	return ks
}

// TestVerifyWhileRecording: records appended while a whole Verify or Export
// runs (after it signed the head) are left for the next run, never reported
// as a tail without a checkpoint.
func TestVerifyWhileRecording(t *testing.T) {
	t.Parallel()
	contract(t, func(t *testing.T, f *audittest.Fixture) {
		ctx := context.Background()
		msgs := audittest.Messages(t, f.Codec, 300)
		record(t, f, msgs[:10])
		done := make(chan error, 1)
		go func() {
			for _, m := range msgs[10:] {
				if err := f.Recorder.Handle(ctx, m); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		for running := true; running; {
			select {
			case err := <-done:
				require.NoError(t, err)
				running = false
			default:
			}
			res, err := f.Trail.Verify(ctx, 0, 0)
			require.NoError(t, err)
			require.True(t, res.OK, "bad %d: %s", res.BadSequence, res.Reason)
			var buf bytes.Buffer
			export(t, f, &buf, 0, 0)
			off := verifyExportOffline(t, buf.Bytes(), f.Keys, f.Now)
			require.True(t, off.OK, off.String())
		}
		res, err := f.Trail.Verify(ctx, 0, 0)
		require.NoError(t, err)
		require.True(t, res.OK, res.Reason)
		require.EqualValues(t, 300, res.Checked)
	})
}
