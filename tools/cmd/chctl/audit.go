package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/auditchain/chainpb"
	auditpb "github.com/cosmic-horizons/fleet/proto/fleet/audit/v1"
)

// Files written by "chctl audit keygen".
const (
	auditPrivateKeyFile = "audit-signing-key.pem"
	auditPublicKeyFile  = "audit-signing-key.pub.pem"
)

const auditUsage = `usage:
  chctl audit export -out FILE [-from N] [-to N] [-addr HOST:PORT] [-token JWT]
      stream the audit trail (or the range -from..-to) with its checkpoints from
      the compliance-auditor into an NDJSON export, for "chctl audit verify".
      "-out -" writes to stdout; a file is written as FILE.partial and renamed
      only once complete. Needs an admin token (-token or $` + envToken + `);
      -addr defaults to $` + envAuditAddr + ` or ` + defaultAuditAddr + `.
  chctl audit verify (-pubkey FILE | -pubkey-b64 KEY)... [-from N] [-to N] [-retention D] EXPORT.ndjson
      verify an audit export offline: every hash, every link and every
      checkpoint signature, each with the key its key id names (repeat -pubkey
      for the keys of earlier rotations). A whole export must end on a
      checkpoint, and one that starts after sequence 1 must start at a
      checkpoint older than -retention (default 2160h, the auditor's default).
      "-" reads the export from stdin. Exits 1 when the export does not
      verify, naming the first bad sequence.
  chctl audit keygen -out DIR
      write a new Ed25519 checkpoint key pair to DIR/` + auditPrivateKeyFile + ` (0600)
      and DIR/` + auditPublicKeyFile

// The compliance-auditor's address.
const (
	envAuditAddr     = "FLEET_AUDIT_ADDR"
	defaultAuditAddr = "127.0.0.1:50054"
)

// errAuditNotVerified makes chctl exit 1 after the failure was printed.
var errAuditNotVerified = errors.New("audit export does not verify")

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, auditUsage)
		if len(args) == 0 {
			return usageError{"audit: missing subcommand (export, verify or keygen)"}
		}
		return nil
	}
	switch args[0] {
	case "export":
		return runAuditExport(ctx, args[1:], stdout, stderr)
	case "verify":
		return runAuditVerify(ctx, args[1:], stdout, stderr)
	case "keygen":
		return runAuditKeygen(args[1:], stdout, stderr)
	default:
		return usageError{fmt.Sprintf("audit: unknown subcommand %q (export, verify or keygen)", args[0])}
	}
}

func runAuditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addServiceFlags(fs, "compliance-auditor", envAuditAddr, defaultAuditAddr)
	out := fs.String("out", "", `file to write the export to; "-" for stdout`)
	from := fs.Int64("from", 0, "first sequence to export (0: the start of the trail)")
	to := fs.Int64("to", 0, "last sequence to export (0: the head when the export starts)")
	quiet := fs.Bool("q", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	switch {
	case fs.NArg() != 0:
		return usageError{"audit export: unexpected argument " + fs.Arg(0) + " (the file is -out)"}
	case *out == "":
		return usageError{"audit export: -out is required"}
	case *from < 0 || *to < 0:
		return usageError{"audit export: -from and -to must not be negative"}
	case *to != 0 && *to < *from:
		return usageError{"audit export: -to must not be below -from"}
	}
	ctx, conn, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := auditpb.NewAuditServiceClient(conn)

	// The header names the key of the newest checkpoint; an empty trail or
	// one not yet checkpointed has none.
	var keyID string
	cp, err := client.GetCheckpoint(ctx, &auditpb.GetCheckpointRequest{})
	switch {
	case err == nil:
		keyID = cp.GetCheckpoint().GetKeyId()
	case status.Code(err) == codes.NotFound:
	default:
		return callError("audit export", err)
	}
	stream, err := client.Export(ctx, &auditpb.ExportRequest{FromSequence: *from, ToSequence: *to})
	if err != nil {
		return callError("audit export", err)
	}

	dst, commit, abort, err := createOutput(*out, stdout)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	defer abort()
	w, err := auditchain.NewWriterHeader(dst, auditchain.Header{KeyID: keyID, From: uint64(*from), To: uint64(*to)})
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	start := time.Now()
	lastReport := start
	progress := func(p chainpb.Progress) {
		if *quiet || time.Since(lastReport) < 2*time.Second {
			return
		}
		lastReport = time.Now()
		fmt.Fprintf(stderr, "exported %d records (up to sequence %d), %d checkpoints\n", p.Records, p.LastSequence, p.Checkpoints)
	}
	p, err := chainpb.WriteExport(stream, w, progress)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return callError("audit export", err)
		}
		return fmt.Errorf("audit export: %w", err)
	}
	if err := commit(); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if !*quiet {
		fmt.Fprintf(stderr, "exported %d records and %d checkpoints in %s to %s (key %s)\n",
			p.Records, p.Checkpoints, time.Since(start).Round(time.Millisecond), *out, cmp.Or(keyID, "none"))
	}
	return nil
}

// createOutput opens path for writing, "-" being stdout. A file is written
// under path.partial and renamed to path by commit; abort, safe to call after
// commit, removes what an unfinished export left.
func createOutput(path string, stdout io.Writer) (w io.Writer, commit, abort func() error, err error) {
	if path == "-" {
		nop := func() error { return nil }
		return stdout, nop, nop, nil
	}
	partial := path + ".partial"
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, nil, err
	}
	done := false
	commit = func() error {
		if err := f.Sync(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		done = true
		return os.Rename(partial, path)
	}
	abort = func() error {
		if done {
			return nil
		}
		_ = f.Close()
		return os.Remove(partial)
	}
	return f, commit, abort, nil
}

// keyFlag collects the values of a repeatable flag.
type keyFlag []string

func (k *keyFlag) String() string { return strings.Join(*k, ",") }

func (k *keyFlag) Set(v string) error {
	*k = append(*k, v)
	return nil
}

// defaultAuditRetention is the compliance-auditor's default AUDIT_RETENTION.
const defaultAuditRetention = 90 * 24 * time.Hour

func runAuditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var pubFiles, pubB64s keyFlag
	fs.Var(&pubFiles, "pubkey", "file with Ed25519 public keys (PEM blocks or base64); repeat for the keys of earlier rotations")
	fs.Var(&pubB64s, "pubkey-b64", "an Ed25519 public key as base64 of its 32 bytes (comma separated for several); repeatable")
	from := fs.Uint64("from", 0, "first sequence to verify (0: the start of the export)")
	to := fs.Uint64("to", 0, "last sequence to verify (0: the end of the export)")
	retention := fs.Duration("retention", defaultAuditRetention,
		"the auditor's AUDIT_RETENTION: a whole export starting after sequence 1 must begin at a checkpoint older than this (0: do not check)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() != 1 {
		return usageError{"audit verify: want exactly one export file"}
	}
	if len(pubFiles) == 0 && len(pubB64s) == 0 {
		return usageError{"audit verify: set -pubkey or -pubkey-b64"}
	}
	if *retention < 0 {
		return usageError{"audit verify: -retention must not be negative"}
	}
	var keys auditchain.KeySet
	add := func(src string, data []byte) error {
		pubs, err := auditchain.ParsePublicKeys(data)
		if err != nil {
			return fmt.Errorf("audit verify: public key %s: %w", src, err)
		}
		for _, p := range pubs {
			if err := keys.Add(p); err != nil {
				return fmt.Errorf("audit verify: %w", err)
			}
		}
		return nil
	}
	for _, f := range pubFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		if err := add(f, data); err != nil {
			return err
		}
	}
	for _, b := range pubB64s {
		if err := add("-pubkey-b64", []byte(b)); err != nil {
			return err
		}
	}
	name := fs.Arg(0)
	var in io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		defer f.Close()
		in = f
	}
	header, res, err := auditchain.VerifyExport(ctxReader{ctx: ctx, r: in}, auditchain.ExportVerifyOptions{
		Keys: keys, From: *from, To: *to, Retention: *retention,
	})
	if errors.Is(err, auditchain.ErrUnknownKey) {
		fmt.Fprintf(stdout, "FAIL: the export names key %s, the public keys given are %s\n", header.KeyID, keys)
		return errAuditNotVerified
	}
	if err != nil {
		return fmt.Errorf("audit verify %s: %w", name, err)
	}
	if !res.OK {
		fmt.Fprintf(stdout, "FAIL at sequence %d: %s: %s\n", res.BadSequence, res.Reason, res.Detail)
		return errAuditNotVerified
	}
	fmt.Fprintln(stdout, res.String())
	if res.Records > 0 {
		fmt.Fprintf(stdout, "records %d..%d, keys %s\n", res.First, res.Head.Sequence, keys)
	}
	switch {
	case res.Records == 0:
	case res.Checkpoints == 0:
		fmt.Fprintln(stderr, "warning: no checkpoint in the range: removal of its newest records cannot be detected")
	case res.LastCheckpoint < res.Head.Sequence:
		fmt.Fprintf(stderr, "warning: records %d..%d of the range come after its last checkpoint and are not covered by a signature\n",
			res.LastCheckpoint+1, res.Head.Sequence)
	}
	if header.IsRange() {
		fmt.Fprintf(stderr, "note: a range export (from %d to %d): records outside it, and the retention anchor, are not checked\n", header.From, header.To)
	}
	return nil
}

// ctxReader stops reading once ctx is done, so a long verification ends on SIGTERM.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func runAuditKeygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write the key pair to (created if missing)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *out == "" || fs.NArg() != 0 {
		return usageError{"audit keygen: want -out DIR and no arguments"}
	}
	pub, priv, err := auditchain.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("audit keygen: %w", err)
	}
	privPEM, err := auditchain.MarshalPrivateKeyPEM(priv)
	if err != nil {
		return fmt.Errorf("audit keygen: %w", err)
	}
	pubPEM, err := auditchain.MarshalPublicKeyPEM(pub)
	if err != nil {
		return fmt.Errorf("audit keygen: %w", err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("audit keygen: %w", err)
	}
	privPath := filepath.Join(*out, auditPrivateKeyFile)
	pubPath := filepath.Join(*out, auditPublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("audit keygen: %s exists; not overwriting a key", p)
		}
	}
	if err := writeNewFile(privPath, privPEM, 0o600); err != nil {
		return fmt.Errorf("audit keygen: %w", err)
	}
	if err := writeNewFile(pubPath, pubPEM, 0o644); err != nil {
		return fmt.Errorf("audit keygen: %w", err)
	}
	fmt.Fprintf(stdout, "key id %s\nprivate key %s\npublic key %s\npublic key base64 %s\n",
		auditchain.KeyID(pub), privPath, pubPath, auditchain.EncodePublicKeyBase64(pub))
	return nil
}

// writeNewFile writes data to a file that must not exist yet, with mode perm.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
