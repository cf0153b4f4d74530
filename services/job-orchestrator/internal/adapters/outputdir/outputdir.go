// Package outputdir implements the app.JobOutputs port over a directory
// that holds one output directory per job, <Root>/<job id>: the local
// backend's job directories, or the Slurm jobs' working directories on the
// cluster's file system as this host mounts it. The backend names the
// stdout and stderr files (StreamFiles); local.StreamFile and
// slurm.StreamFile are the two in use.
//
// Confinement: every access goes through os.Root, opened on Root and then
// on the job's directory within it, so no path, "..", absolute path or
// symbolic link can reach a file outside the job's directory, even when the
// job (whose user owns its directory) swaps names while a request runs.
// Beyond that, symbolic links are not followed at all: a path with a link
// in any component is refused (app.ErrOutsideOutputs), listings leave them
// out, and an opened file must be the very regular file that was checked
// (same device and inode). A file with more than one hard link is treated
// the same way, since it may be another user's file linked in. Files are opened non-blocking, so a FIFO planted
// by a job cannot hang a request.
package outputdir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// StreamFiles names, for a job id, the file of its stdout or stderr within
// its output directory.
type StreamFiles func(jobID string, stream app.OutputStream) string

// Dir reads the output directories under one root.
type Dir struct {
	root  string
	names StreamFiles
}

var _ app.JobOutputs = (*Dir)(nil)

// New returns the reader of the job directories under root (an absolute
// path), whose stdout and stderr files names gives.
func New(root string, names StreamFiles) (*Dir, error) {
	if root == "" || !path.IsAbs(root) {
		return nil, fmt.Errorf("outputdir: root %q must be an absolute path", root)
	}
	if names == nil {
		return nil, errors.New("outputdir: stream file names are required")
	}
	return &Dir{root: root, names: names}, nil
}

// jobRoot opens the job's directory as an os.Root. A job without a
// directory gives fs.ErrNotExist.
func (d *Dir) jobRoot(jobID string) (*os.Root, error) {
	if jobID == "" || strings.ContainsAny(jobID, "/\x00") || jobID == "." || jobID == ".." {
		return nil, fmt.Errorf("job id %q: %w", jobID, app.ErrOutsideOutputs)
	}
	top, err := os.OpenRoot(d.root)
	if err != nil {
		return nil, fmt.Errorf("open output root: %w", err)
	}
	defer top.Close()
	fi, err := top.Lstat(jobID)
	if err != nil {
		return nil, fmt.Errorf("job directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("job directory %s: %w", jobID, app.ErrOutsideOutputs)
	}
	r, err := top.OpenRoot(jobID)
	if err != nil {
		return nil, fmt.Errorf("job directory: %w", err)
	}
	return r, nil
}

// OpenStream implements app.JobOutputs.
func (d *Dir) OpenStream(_ context.Context, jobID string, stream app.OutputStream) (app.OutputFile, error) {
	name := d.names(jobID, stream)
	if name == "" {
		return nil, fmt.Errorf("no %s file: %w", stream, fs.ErrNotExist)
	}
	r, err := d.jobRoot(jobID)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return openRegular(r, name)
}

// Open implements app.JobOutputs.
func (d *Dir) Open(_ context.Context, jobID, name string) (app.OutputFile, error) {
	if name == "" || strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("%q: %w", name, app.ErrOutsideOutputs)
	}
	name = path.Clean(name)
	if name == ".." || strings.HasPrefix(name, "../") {
		return nil, fmt.Errorf("%q: %w", name, app.ErrOutsideOutputs)
	}
	r, err := d.jobRoot(jobID)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return openRegular(r, name)
}

// openRegular opens name within r when no component of it is a symbolic
// link and it is a regular file, and checks that the file opened is the one
// checked.
func openRegular(r *os.Root, name string) (*os.File, error) {
	parts := strings.Split(name, "/")
	var fi fs.FileInfo
	for i := range parts {
		var err error
		fi, err = r.Lstat(strings.Join(parts[:i+1], "/"))
		if err != nil {
			return nil, err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, fmt.Errorf("%s is a symbolic link: %w", strings.Join(parts[:i+1], "/"), app.ErrOutsideOutputs)
		case i < len(parts)-1 && !fi.IsDir():
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", name, app.ErrNotRegular)
	}
	if linkedElsewhere(fi) {
		return nil, fmt.Errorf("%s has other hard links: %w", name, app.ErrOutsideOutputs)
	}
	f, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		// Swapped for a link out of the directory since the check.
		return nil, fmt.Errorf("%s: %w: %w", name, app.ErrOutsideOutputs, err)
	}
	opened, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if !opened.Mode().IsRegular() || !os.SameFile(fi, opened) {
		_ = f.Close()
		return nil, fmt.Errorf("%s changed while it was opened: %w", name, app.ErrOutsideOutputs)
	}
	return f, nil
}

// entriesPerFile bounds List's walk: it visits at most this many entries
// (files, directories, links) per file it may return.
const entriesPerFile = 10

// linkedElsewhere reports whether a file has more than one hard link: it
// may be a file from outside the job's directory that the job linked in
// (where the kernel allows linking others' files, fs.protected_hardlinks=0),
// so it is neither listed nor read.
func linkedElsewhere(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink > 1
}

// List implements app.JobOutputs. It returns truncated when the directory
// holds more than limit regular files, or more than limit*entriesPerFile
// entries in all; the files returned are then the first found, in path
// order among themselves.
func (d *Dir) List(ctx context.Context, jobID string, limit int) ([]app.OutputInfo, bool, error) {
	r, err := d.jobRoot(jobID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	var out []app.OutputInfo
	truncated := false
	errFull := errors.New("full")
	// A job may leave far more directories or links than files: the walk
	// visits at most this many entries of any kind.
	budget := max(limit, 1) * entriesPerFile
	// WalkDir reports symbolic links as such (it never follows them), and
	// os.Root keeps every read inside the directory.
	err = fs.WalkDir(r.FS(), ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			return nil // a subdirectory that vanished or cannot be read
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if budget--; budget < 0 {
			truncated = true
			return errFull
		}
		if !e.Type().IsRegular() {
			return nil
		}
		if len(out) == limit {
			truncated = true
			return errFull
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || linkedElsewhere(info) {
			return nil // removed or replaced meanwhile, or a hard link
		}
		out = append(out, app.OutputInfo{Path: p, Size: info.Size(), ModifiedAt: info.ModTime()})
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, false, fmt.Errorf("list job directory: %w", err)
	}
	slices.SortFunc(out, func(a, b app.OutputInfo) int { return strings.Compare(a.Path, b.Path) })
	return out, truncated, nil
}
