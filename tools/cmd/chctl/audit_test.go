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
		{name: "verify with two keys", args: []string{"audit", "verify", "-pubkey", "a", "-pubkey-b64", "b", "f"}, wantErr: "only one of"},
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
