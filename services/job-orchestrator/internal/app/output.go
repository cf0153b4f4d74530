package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	pathpkg "path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// OutputStream names one of a job's two output streams.
type OutputStream int

// The output streams.
const (
	StreamStdout OutputStream = iota + 1
	StreamStderr
)

func (s OutputStream) String() string {
	switch s {
	case StreamStdout:
		return "stdout"
	case StreamStderr:
		return "stderr"
	}
	return "OutputStream(" + strconv.Itoa(int(s)) + ")"
}

// OutputChunkSize is the largest chunk StreamJobOutput and DownloadJobOutput
// send, and the size of the one buffer each call holds.
const OutputChunkSize = 64 << 10

// MaxOutputFiles is the most files ListJobOutputs returns.
const MaxOutputFiles = 10000

// JobOutputs is the port to jobs' output directories: the directory a job's
// backend writes its stdout, stderr and other files into, on a file system
// this process reads (the local backend's job directory; for Slurm, the
// job's working directory on the cluster's shared file system). Every
// adapter confines every access to the job's directory: a path or symbolic
// link leading out of it is refused with an error wrapping ErrOutsideOutputs.
type JobOutputs interface {
	// OpenStream opens the job's stdout or stderr file for reading. A job
	// that has not written it yet gives an error wrapping fs.ErrNotExist.
	OpenStream(ctx context.Context, jobID string, stream OutputStream) (OutputFile, error)
	// List returns up to limit regular files below the job's directory, in
	// path order, and whether there were more; symbolic links (and what
	// they point to) and special files are left out. A job without a
	// directory has no files.
	List(ctx context.Context, jobID string, limit int) (files []OutputInfo, truncated bool, err error)
	// Open opens the regular file at path, relative to the job's directory
	// ('/'-separated, already checked by domain.ValidateOutputPath). A
	// missing file gives an error wrapping fs.ErrNotExist; a path through a
	// symbolic link, or to something that is not a regular file, an error
	// wrapping ErrOutsideOutputs or ErrNotRegular.
	Open(ctx context.Context, jobID, path string) (OutputFile, error)
}

// OutputFile is an open output file.
type OutputFile interface {
	io.Reader
	io.ReaderAt
	io.Closer
	Stat() (fs.FileInfo, error)
}

// OutputInfo describes one file of a job's output directory.
type OutputInfo struct {
	Path       string // relative to the job's directory, '/'-separated
	Size       int64
	ModifiedAt time.Time
}

// Errors of JobOutputs adapters.
var (
	// ErrOutsideOutputs: the path leads out of the job's directory, or
	// through a symbolic link.
	ErrOutsideOutputs = errors.New("path leaves the job's output directory")
	// ErrNotRegular: the path names a directory or special file.
	ErrNotRegular = errors.New("not a regular file")
)

// errNoOutputs is returned when the service was built without JobOutputs.
var errNoOutputs = fmt.Errorf("job outputs are not readable by this service: %w", domain.ErrUnavailable)

// StreamInput is the input of StreamJobOutput.
type StreamInput struct {
	JobID  string
	Stream OutputStream
	Offset int64
	Follow bool
}

// StreamJobOutput calls send with the bytes of the job's stream from
// in.Offset on, in chunks of at most OutputChunkSize, each with the offset
// of its first byte. Without Follow it returns at the current end of the
// file. With Follow it keeps reading as the job writes until the job has
// reached a terminal status and the file's end has been reached after that
// status was read, so nothing written before the job ended is missed. A
// job that has not written the file yet streams nothing until it does.
//
// Memory is one buffer of OutputChunkSize: the data is read from the file
// as the client takes it, so a slow client slows only its own stream. Only
// the owner or an admin may read; others get domain.ErrNotFound (and the
// refusal is audited). Every accepted call is audited (READ).
func (a *App) StreamJobOutput(ctx context.Context, actor Actor, in StreamInput, send func(data []byte, offset int64) error) error {
	var ve []domain.FieldViolation
	if err := domain.ValidateJobID("job_id", in.JobID); err != nil {
		ve = append(ve, violationsOf(err)...)
	}
	if in.Stream != StreamStdout && in.Stream != StreamStderr {
		ve = append(ve, domain.FieldViolation{Field: "stream", Description: "must be OUTPUT_STREAM_STDOUT or OUTPUT_STREAM_STDERR"})
	}
	if in.Offset < 0 {
		ve = append(ve, domain.FieldViolation{Field: "offset", Description: "must not be negative"})
	}
	if len(ve) > 0 {
		a.auditInvalid(ctx, actor, in.JobID, events.AuditActionRead, ve)
		return &domain.ValidationError{Violations: ve}
	}
	if a.outputs == nil {
		return errNoOutputs
	}
	changed, unsubscribe := a.notifier.subscribe(in.JobID)
	defer unsubscribe()
	j, err := a.outputJob(ctx, actor, in.JobID, events.AuditActionRead)
	if err != nil {
		return fmt.Errorf("stream output: %w", err)
	}
	a.auditOutput(ctx, actor, j.ID, events.AuditActionRead, events.AuditOutcomeSuccess, map[string]string{
		"output": in.Stream.String(), "offset": strconv.FormatInt(in.Offset, 10), "follow": strconv.FormatBool(in.Follow),
	})

	var f OutputFile
	reopened := false
	defer func() {
		if f != nil {
			_ = f.Close()
		}
	}()
	buf := make([]byte, OutputChunkSize)
	off := in.Offset
	filePoll := time.NewTicker(a.cfg.OutputPollInterval)
	defer filePoll.Stop()
	jobPoll := time.NewTicker(a.cfg.WatchPollInterval)
	defer jobPoll.Stop()
	for {
		// The status is read before the file is read to its end: once it
		// is terminal, that end is the end of the output.
		ended := j.Status.Terminal()
		if ended && f != nil && !reopened {
			// Opened again after the job ended: a network file system
			// (NFS's close-to-open consistency) then shows every byte the
			// job wrote, which a descriptor opened earlier may not.
			_ = f.Close()
			f, reopened = nil, true
		}
		if f == nil {
			f, err = a.outputs.OpenStream(ctx, j.ID, in.Stream)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				f = nil
			case errors.Is(err, ErrOutsideOutputs), errors.Is(err, ErrNotRegular):
				// The job replaced the file with a link or a special file.
				return fmt.Errorf("stream output of job %s: %w: %w", j.ID, domain.Invalid("stream",
					"the job's %s file is not a regular file in its directory (a symbolic link or special file) and is not read", in.Stream), err)
			case err != nil:
				return fmt.Errorf("stream output of job %s: %w", j.ID, err)
			}
		}
		for f != nil {
			n, err := f.ReadAt(buf, off)
			if n > 0 {
				if serr := send(buf[:n], off); serr != nil {
					return fmt.Errorf("stream output of job %s: send: %w", j.ID, serr)
				}
				off += int64(n)
			}
			if errors.Is(err, io.EOF) || n == 0 && err == nil {
				break
			}
			if err != nil {
				return fmt.Errorf("stream output of job %s: read: %w", j.ID, err)
			}
		}
		if !in.Follow || ended {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-filePoll.C:
			continue
		case <-changed:
		case <-jobPoll.C:
		}
		if j, err = a.repo.Get(ctx, j.ID); err != nil {
			return fmt.Errorf("stream output of job %s: %w", in.JobID, err)
		}
	}
}

// ListJobOutputs returns the regular files of the job's output directory
// (at most MaxOutputFiles, truncated says when there were more). Only the
// owner or an admin; audited (READ).
func (a *App) ListJobOutputs(ctx context.Context, actor Actor, jobID string) (files []OutputInfo, truncated bool, err error) {
	if err := domain.ValidateJobID("job_id", jobID); err != nil {
		return nil, false, err
	}
	if a.outputs == nil {
		return nil, false, errNoOutputs
	}
	j, err := a.outputJob(ctx, actor, jobID, events.AuditActionRead)
	if err != nil {
		return nil, false, fmt.Errorf("list outputs: %w", err)
	}
	files, truncated, err = a.outputs.List(ctx, j.ID, MaxOutputFiles)
	if err != nil {
		return nil, false, fmt.Errorf("list outputs of job %s: %w", j.ID, outputError(err))
	}
	a.auditOutput(ctx, actor, j.ID, events.AuditActionRead, events.AuditOutcomeSuccess, map[string]string{
		"outputs": "list", "files": strconv.Itoa(len(files)), "truncated": strconv.FormatBool(truncated),
	})
	return files, truncated, nil
}

// DownloadJobOutput sends the file at path of the job's output directory:
// first its description (size as opened), then its content in chunks of at
// most OutputChunkSize (exactly the size described, or fewer bytes when the
// file shrank meanwhile), and returns the lower-case hexadecimal SHA-256 of
// the bytes sent. A path that leaves the directory (checked by
// domain.ValidateOutputPath, and for symbolic links when opened) is
// domain.ErrInvalidArgument; a missing file domain.ErrOutputNotFound. Only
// the owner or an admin; audited (EXPORT), refused paths included.
func (a *App) DownloadJobOutput(ctx context.Context, actor Actor, jobID, path string,
	describe func(OutputInfo) error, send func([]byte) error) (sum string, err error) {
	var ve []domain.FieldViolation
	if err := domain.ValidateJobID("job_id", jobID); err != nil {
		ve = append(ve, violationsOf(err)...)
	}
	if err := domain.ValidateOutputPath("path", path); err != nil {
		ve = append(ve, violationsOf(err)...)
	}
	if len(ve) > 0 {
		a.auditInvalid(ctx, actor, jobID, events.AuditActionExport, ve, "path", truncate(path, 256))
		return "", &domain.ValidationError{Violations: ve}
	}
	if a.outputs == nil {
		return "", errNoOutputs
	}
	j, err := a.outputJob(ctx, actor, jobID, events.AuditActionExport)
	if err != nil {
		return "", fmt.Errorf("download output: %w", err)
	}
	f, err := a.outputs.Open(ctx, j.ID, path)
	if err != nil {
		err = outputError(err)
		a.auditOutput(ctx, actor, j.ID, events.AuditActionExport, events.AuditOutcomeFailure, map[string]string{
			"path": truncate(path, 256), "refused": err.Error()})
		return "", fmt.Errorf("download output of job %s: %w", j.ID, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("download output of job %s: %w", j.ID, err)
	}
	a.auditOutput(ctx, actor, j.ID, events.AuditActionExport, events.AuditOutcomeSuccess, map[string]string{
		"path": truncate(path, 256), "size_bytes": strconv.FormatInt(fi.Size(), 10)})
	if err := describe(OutputInfo{Path: cleanOutputPath(path), Size: fi.Size(), ModifiedAt: fi.ModTime()}); err != nil {
		return "", fmt.Errorf("download output of job %s: send: %w", j.ID, err)
	}
	h := sha256.New()
	buf := make([]byte, OutputChunkSize)
	r := io.LimitReader(f, fi.Size())
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			h.Write(buf[:n])
			if err := send(buf[:n]); err != nil {
				return "", fmt.Errorf("download output of job %s: send: %w", j.ID, err)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return "", fmt.Errorf("download output of job %s: read: %w", j.ID, rerr)
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// outputJob returns the job when actor may read its outputs; another
// user's job is domain.ErrNotFound, recorded as a DENIED action.
func (a *App) outputJob(ctx context.Context, actor Actor, id string, action events.AuditAction) (*domain.Job, error) {
	j, err := a.GetJob(ctx, actor, id)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			a.auditDenied(ctx, actor, id, action)
		}
		return nil, err
	}
	return j, nil
}

// auditInvalid records a request refused as invalid, when it names a job
// the actor may see (requests about no job have nothing to be recorded
// against), with the first violation and the given key/value pairs.
func (a *App) auditInvalid(ctx context.Context, actor Actor, jobID string, action events.AuditAction, ve []domain.FieldViolation, kv ...string) {
	if domain.ValidateJobID("job_id", jobID) != nil {
		return
	}
	j, err := a.repo.Get(ctx, jobID)
	if err != nil || !actor.canSee(j) {
		return
	}
	after := map[string]string{"refused": ve[0].Field + ": " + ve[0].Description}
	for i := 0; i+1 < len(kv); i += 2 {
		after[kv[i]] = kv[i+1]
	}
	a.auditOutput(ctx, actor, j.ID, action, events.AuditOutcomeFailure, after)
}

// outputError maps an adapter's error onto the domain's: a path out of the
// directory or to a non-regular file is invalid input, a missing file
// domain.ErrOutputNotFound.
func outputError(err error) error {
	switch {
	case errors.Is(err, ErrOutsideOutputs):
		return domain.Invalid("path", "leaves the job's output directory (through a symbolic link)")
	case errors.Is(err, ErrNotRegular):
		return domain.Invalid("path", "not a regular file")
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", domain.ErrOutputNotFound, err)
	}
	return err
}

// auditOutput records a read of a job's outputs as an audit.action_recorded
// in the job's outbox; the job itself does not change. A failure to record
// it is logged: the read is not refused for it.
func (a *App) auditOutput(ctx context.Context, actor Actor, jobID string, action events.AuditAction, outcome events.AuditOutcome, after map[string]string) {
	a.auditJob(ctx, actor, jobID, action, outcome, after, "read of job outputs not audited")
}

// auditJob records a command about job jobID that did not change it as an
// audit.action_recorded in the job's outbox. A failure to record it is
// logged with failMsg; the command is not refused for it.
func (a *App) auditJob(ctx context.Context, actor Actor, jobID string, action events.AuditAction, outcome events.AuditOutcome, after map[string]string, failMsg string) {
	rec := events.AuditActionRecorded{
		AuditID: a.newID(), Action: action, ActorUserID: actor.UserID, ActorRole: actor.Role(),
		ResourceType: "job", ResourceID: jobID, After: after, Outcome: outcome,
	}
	if actor.IP != "" {
		ip := actor.IP
		rec.IPAddress = &ip
	}
	ev, err := events.NewEvent(rec, events.Meta{Producer: a.cfg.Producer, UserID: actor.UserID,
		CorrelationID: a.correlationID(ctx, nil), Now: a.now})
	if err == nil {
		err = a.repo.AppendOutbox(ctx, jobID, []OutboxRecord{{Event: ev}})
	}
	if err != nil {
		a.log.WarnContext(ctx, failMsg, "job_id", jobID, "user_id", actor.UserID, "action", string(action), "error", err)
	}
}

// cleanOutputPath is p, already validated, without "." components and
// repeated or trailing separators.
func cleanOutputPath(p string) string { return pathpkg.Clean(p) }

// truncate returns s as valid UTF-8, cut to at most n runes.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
