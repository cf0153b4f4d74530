package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
)

// auditExport generates a key pair with "chctl audit keygen", builds a chain of n
// records signed every 10 records with the private key and returns the key
// directory and the export's lines.
func auditExport(t *testing.T, n int) (keyDir string, lines []string) {
	t.Helper()
	keyDir = filepath.Join(t.TempDir(), "keys")
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"audit", "keygen", "-out", keyDir}, &out, &out), out.String())
	require.Contains(t, out.String(), "key id ")

	signer, err := auditchain.KeyConfig{PrivateKeyFile: filepath.Join(keyDir, auditPrivateKeyFile)}.LoadSigner()
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := auditchain.NewWriter(&buf, signer.KeyID())
	require.NoError(t, err)
	chain := auditchain.NewChain(auditchain.Head{})
	at := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	for i := 1; i <= n; i++ {
		r, err := chain.Append(auditchain.Record{
			EventID:      fmt.Sprintf("0190d2c4-0000-7000-8000-%012d", i),
			OccurredAt:   at.Add(time.Duration(i) * time.Second),
			RecordedAt:   at.Add(time.Duration(i)*time.Second + time.Millisecond),
			Actor:        "alice",
			ActorRole:    "user",
			Action:       "job.submit",
			ResourceType: "job",
			ResourceID:   fmt.Sprintf("job-%d", i),
			Details:      map[string]string{"outcome": "SUCCESS"},
		})
		require.NoError(t, err)
		require.NoError(t, w.WriteRecord(&r))
		if i%10 == 0 {
			c := signer.Sign(chain.Head(), at.Add(time.Duration(i)*time.Second))
			require.NoError(t, w.WriteCheckpoint(&c))
		}
	}
	require.NoError(t, w.Flush())
	return keyDir, strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

// recordLine returns the index of the line holding record seq.
func recordLine(t *testing.T, lines []string, seq int) int {
	t.Helper()
	prefix := fmt.Sprintf(`{"type":"record","sequence":%d,`, seq)
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	t.Fatalf("no line for record %d", seq)
	return -1
}

func TestAuditVerify(t *testing.T) {
	t.Parallel()
	keyDir, lines := auditExport(t, 50)
	pubFile := filepath.Join(keyDir, auditPublicKeyFile)
	pub, err := auditchain.KeyConfig{PublicKeyFile: pubFile}.LoadPublicKey()
	require.NoError(t, err)
	otherDir, _ := auditExport(t, 1)
	tamper := func(seq int, old, repl string) func([]string) []string {
		return func(ls []string) []string {
			i := recordLine(t, ls, seq)
			require.Contains(t, ls[i], old)
			ls[i] = strings.Replace(ls[i], old, repl, 1)
			return ls
		}
	}
	tests := []struct {
		name    string
		edit    func([]string) []string
		keyArgs []string
		wantOut string
		wantErr string
	}{
		{name: "untouched export", wantOut: "ok: 50 records, 5 checkpoints, head "},
		{name: "base64 public key", keyArgs: []string{"-pubkey-b64", auditchain.EncodePublicKeyBase64(pub)}, wantOut: "ok: 50 records"},
		{name: "one character of an actor", edit: tamper(17, `"actor":"alice"`, `"actor":"alicf"`),
			wantOut: "FAIL at sequence 17: hash mismatch", wantErr: "does not verify"},
		{name: "one character of a timestamp", edit: tamper(33, `:33.001Z"`, `:34.001Z"`),
			wantOut: "FAIL at sequence 33: hash mismatch", wantErr: "does not verify"},
		{name: "one character of a prev_hash", edit: func(ls []string) []string {
			i := recordLine(t, ls, 5)
			j := strings.Index(ls[i], `"prev_hash":"`) + len(`"prev_hash":"`)
			c := "0"
			if ls[i][j] == '0' {
				c = "1"
			}
			ls[i] = ls[i][:j] + c + ls[i][j+1:]
			return ls
		}, wantOut: "FAIL at sequence 5: broken link", wantErr: "does not verify"},
		{name: "middle record deleted", edit: func(ls []string) []string {
			i := recordLine(t, ls, 24)
			return append(ls[:i:i], ls[i+1:]...)
		}, wantOut: "FAIL at sequence 24: gap", wantErr: "does not verify"},
		{name: "newest records deleted, checkpoint kept", edit: func(ls []string) []string {
			i := recordLine(t, ls, 46)
			return append(ls[:i:i], ls[len(ls)-1])
		}, wantOut: "FAIL at sequence 46: truncated after checkpoint", wantErr: "does not verify"},
		{name: "newest records deleted with their checkpoint", edit: func(ls []string) []string {
			return ls[:recordLine(t, ls, 46)]
		}, wantOut: "FAIL at sequence 45: head not covered by a checkpoint", wantErr: "does not verify"},
		{name: "oldest records deleted with their checkpoints, within the retention period", edit: func(ls []string) []string {
			return append(ls[:1:1], ls[recordLine(t, ls, 20)+1:]...)
		}, keyArgs: []string{"-pubkey", pubFile, "-retention", "876000h"},
			wantOut: "FAIL at sequence 20: retention anchor younger than the retention period", wantErr: "does not verify"},
		{name: "oldest records removed by a retention of 90 days", edit: func(ls []string) []string {
			return append(ls[:1:1], ls[recordLine(t, ls, 20)+1:]...)
		}, wantOut: "ok: 30 records, 4 checkpoints"},
		{name: "another key", keyArgs: []string{"-pubkey", filepath.Join(otherDir, auditPublicKeyFile)},
			wantOut: "FAIL: the export names key", wantErr: "does not verify"},
		{name: "another key, header key id removed", keyArgs: []string{"-pubkey", filepath.Join(otherDir, auditPublicKeyFile)},
			edit: func(ls []string) []string {
				ls[0] = `{"type":"header","format":"fleet-audit-export","version":1}`
				return ls
			}, wantOut: "FAIL at sequence 10: bad checkpoint signature", wantErr: "does not verify"},
		{name: "malformed line", edit: func(ls []string) []string {
			i := recordLine(t, ls, 3)
			ls[i] = ls[i][:len(ls[i])-1]
			return ls
		}, wantErr: "line 4: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ls := append([]string(nil), lines...)
			if tt.edit != nil {
				ls = tt.edit(ls)
			}
			file := filepath.Join(t.TempDir(), "export.ndjson")
			require.NoError(t, os.WriteFile(file, []byte(strings.Join(ls, "\n")+"\n"), 0o644))
			keyArgs := tt.keyArgs
			if keyArgs == nil {
				keyArgs = []string{"-pubkey", pubFile}
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), append(append([]string{"audit", "verify"}, keyArgs...), file), &out, &errOut)
			if tt.wantErr == "" {
				require.NoError(t, err, errOut.String())
			} else {
				require.ErrorContains(t, err, tt.wantErr)
				var usage usageError
				require.NotErrorAs(t, err, &usage, "a failed verification exits 1, not 2")
			}
			require.Contains(t, out.String(), tt.wantOut)
		})
	}
}

func TestAuditKeygen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "k")
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"audit", "keygen", "-out", dir}, &out, &out))
	info, err := os.Stat(filepath.Join(dir, auditPrivateKeyFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	signer, err := auditchain.KeyConfig{
		PrivateKeyFile: filepath.Join(dir, auditPrivateKeyFile),
		PublicKeyFile:  filepath.Join(dir, auditPublicKeyFile),
	}.LoadSigner()
	require.NoError(t, err, "the public key file must match the private key")
	require.Contains(t, out.String(), "key id "+signer.KeyID())

	err = run(context.Background(), []string{"audit", "keygen", "-out", dir}, &out, &out)
	require.ErrorContains(t, err, "not overwriting a key")
}

func TestAuditUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no subcommand", args: []string{"audit"}, wantErr: "missing subcommand"},
		{name: "unknown subcommand", args: []string{"audit", "shred"}, wantErr: `unknown subcommand "shred"`},
		{name: "verify without file", args: []string{"audit", "verify", "-pubkey-b64", "x"}, wantErr: "exactly one export file"},
		{name: "verify without key", args: []string{"audit", "verify", "f"}, wantErr: "set -pubkey or -pubkey-b64"},
		{name: "verify with a negative retention", args: []string{"audit", "verify", "-pubkey", "a", "-retention", "-1h", "f"}, wantErr: "-retention must not be negative"},
		{name: "keygen without dir", args: []string{"audit", "keygen"}, wantErr: "want -out DIR"},
		{name: "unknown flag", args: []string{"audit", "verify", "-nope"}, wantErr: "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := run(context.Background(), tt.args, &out, &out)
			require.ErrorContains(t, err, tt.wantErr)
			var usage usageError
			require.ErrorAs(t, err, &usage)
		})
	}
}

// TestAuditVerifyAfterKeyRotation: checkpoints signed with key A, then with
// key B after a rotation; the export verifies with both public keys, given as
// two -pubkey flags or as one file holding both, and not with B alone.
func TestAuditVerifyAfterKeyRotation(t *testing.T) {
	t.Parallel()
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{dirA, dirB} {
		var out bytes.Buffer
		require.NoError(t, run(context.Background(), []string{"audit", "keygen", "-out", d}, &out, &out), out.String())
	}
	signerA, err := auditchain.KeyConfig{PrivateKeyFile: filepath.Join(dirA, auditPrivateKeyFile)}.LoadSigner()
	require.NoError(t, err)
	signerB, err := auditchain.KeyConfig{PrivateKeyFile: filepath.Join(dirB, auditPrivateKeyFile)}.LoadSigner()
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := auditchain.NewWriter(&buf, signerB.KeyID())
	require.NoError(t, err)
	chain := auditchain.NewChain(auditchain.Head{})
	at := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	for i := 1; i <= 20; i++ {
		r, err := chain.Append(auditchain.Record{
			EventID: fmt.Sprintf("0190d2c4-0000-7000-8000-%012d", i), OccurredAt: at, RecordedAt: at,
			Actor: "alice", ActorRole: "user", Action: "job.submit", ResourceType: "job", ResourceID: fmt.Sprintf("job-%d", i),
		})
		require.NoError(t, err)
		require.NoError(t, w.WriteRecord(&r))
		if i%5 == 0 {
			signer := signerA
			if i > 10 {
				signer = signerB
			}
			c := signer.Sign(chain.Head(), at)
			require.NoError(t, w.WriteCheckpoint(&c))
		}
	}
	require.NoError(t, w.Flush())
	file := filepath.Join(t.TempDir(), "export.ndjson")
	require.NoError(t, os.WriteFile(file, buf.Bytes(), 0o644))
	pubA, pubB := filepath.Join(dirA, auditPublicKeyFile), filepath.Join(dirB, auditPublicKeyFile)
	both := filepath.Join(t.TempDir(), "keys.pem")
	a, err := os.ReadFile(pubA)
	require.NoError(t, err)
	b, err := os.ReadFile(pubB)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(both, append(a, b...), 0o644))

	for _, keyArgs := range [][]string{{"-pubkey", pubA, "-pubkey", pubB}, {"-pubkey", both}} {
		out, errOut, err := runSplit(append(append([]string{"audit", "verify"}, keyArgs...), file)...)
		require.NoError(t, err, out+errOut)
		require.Contains(t, out, "ok: 20 records, 4 checkpoints")
	}
	out, _, err := runSplit("audit", "verify", "-pubkey", pubB, file)
	require.ErrorIs(t, err, errAuditNotVerified)
	require.Contains(t, out, "FAIL at sequence 5: bad checkpoint signature")
	require.Contains(t, out, signerA.KeyID())
}
