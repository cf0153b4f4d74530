package outputdir_test

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/outputdir"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/slurm"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

const jobID = "job-1"

// tree makes <root>/job-1 with files, a subdirectory, links into and out of
// it, a FIFO, and a secret beside the job directory.
func tree(t *testing.T) (root string) {
	t.Helper()
	root = t.TempDir()
	dir := filepath.Join(root, jobID)
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	write("stdout.log", "out\n")
	write("stderr.log", "err\n")
	write("results/image.fits", "FITS")
	write("results/deep/b.txt", "b")
	write("a.txt", "a")
	require.NoError(t, os.WriteFile(filepath.Join(root, "secret"), []byte("secret"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "other-job"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "other-job", "stdout.log"), []byte("other"), 0o600))
	require.NoError(t, os.Symlink(filepath.Join(root, "secret"), filepath.Join(dir, "abs-link")))
	require.NoError(t, os.Symlink("../secret", filepath.Join(dir, "rel-link")))
	require.NoError(t, os.Symlink("a.txt", filepath.Join(dir, "inner-link")))
	require.NoError(t, os.Symlink("../other-job", filepath.Join(dir, "dir-link")))
	require.NoError(t, os.Symlink("/etc", filepath.Join(dir, "etc")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	// A hard link to a file outside the directory (as root, or where
	// fs.protected_hardlinks is 0, a job could link others' files).
	require.NoError(t, os.Link(filepath.Join(root, "secret"), filepath.Join(dir, "hard-link")))
	return root
}

func TestListLeavesOutLinksAndSpecialFiles(t *testing.T) {
	t.Parallel()
	root := tree(t)
	d, err := outputdir.New(root, local.StreamFile)
	require.NoError(t, err)
	files, truncated, err := d.List(context.Background(), jobID, 100)
	require.NoError(t, err)
	require.False(t, truncated)
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
		require.WithinDuration(t, time.Now(), f.ModifiedAt, time.Minute)
	}
	require.Equal(t, []string{"a.txt", "results/deep/b.txt", "results/image.fits", "stderr.log", "stdout.log"}, paths)
	require.EqualValues(t, 4, files[2].Size)

	files, truncated, err = d.List(context.Background(), jobID, 2)
	require.NoError(t, err)
	require.True(t, truncated)
	require.Len(t, files, 2)

	files, truncated, err = d.List(context.Background(), "no-such-job", 100)
	require.NoError(t, err, "a job without a directory has no files")
	require.False(t, truncated)
	require.Empty(t, files)
}

func TestOpenIsConfinedToTheJobDirectory(t *testing.T) {
	t.Parallel()
	root := tree(t)
	d, err := outputdir.New(root, local.StreamFile)
	require.NoError(t, err)
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr error
	}{
		{name: "file", path: "a.txt", want: "a"},
		{name: "nested file", path: "results/deep/b.txt", want: "b"},
		{name: "dot components", path: "./results//image.fits", want: "FITS"},
		{name: "missing", path: "nope.txt", wantErr: fs.ErrNotExist},
		{name: "below a file", path: "a.txt/x", wantErr: fs.ErrNotExist},
		{name: "dot dot", path: "../secret", wantErr: app.ErrOutsideOutputs},
		{name: "dot dot inside", path: "results/../../secret", wantErr: app.ErrOutsideOutputs},
		{name: "absolute", path: filepath.Join(root, "secret"), wantErr: app.ErrOutsideOutputs},
		{name: "absolute link", path: "abs-link", wantErr: app.ErrOutsideOutputs},
		{name: "relative link out", path: "rel-link", wantErr: app.ErrOutsideOutputs},
		{name: "link to a directory out", path: "dir-link/stdout.log", wantErr: app.ErrOutsideOutputs},
		{name: "link to /etc", path: "etc/passwd", wantErr: app.ErrOutsideOutputs},
		{name: "link inside is not followed either", path: "inner-link", wantErr: app.ErrOutsideOutputs},
		{name: "directory", path: "results", wantErr: app.ErrNotRegular},
		{name: "fifo", path: "fifo", wantErr: app.ErrNotRegular},
		{name: "hard link", path: "hard-link", wantErr: app.ErrOutsideOutputs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := d.Open(context.Background(), jobID, tt.path)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Nil(t, f)
				return
			}
			require.NoError(t, err)
			defer f.Close()
			b, err := io.ReadAll(f)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(b))
		})
	}
}

func TestJobDirectoryMustBeADirectoryInTheRoot(t *testing.T) {
	t.Parallel()
	root := tree(t)
	require.NoError(t, os.Symlink(filepath.Join(root, "other-job"), filepath.Join(root, "linked-job")))
	d, err := outputdir.New(root, local.StreamFile)
	require.NoError(t, err)
	for _, id := range []string{"linked-job", "..", ".", "a/b", ""} {
		_, err := d.OpenStream(context.Background(), id, app.StreamStdout)
		require.ErrorIs(t, err, app.ErrOutsideOutputs, "job id %q", id)
	}
	_, err = d.OpenStream(context.Background(), "missing-job", app.StreamStdout)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

func TestOpenStreamUsesTheBackendsNames(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, jobID)
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, jobID+".out"), []byte("slurm out"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, jobID+".err"), []byte("slurm err"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stdout.log"), []byte("local out"), 0o644))
	// A job that replaced its stderr file with a link out of its directory.
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "stderr.log")))

	read := func(names outputdir.StreamFiles, s app.OutputStream) (string, error) {
		d, err := outputdir.New(root, names)
		require.NoError(t, err)
		f, err := d.OpenStream(context.Background(), jobID, s)
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		return string(b), err
	}
	got, err := read(slurm.StreamFile, app.StreamStdout)
	require.NoError(t, err)
	require.Equal(t, "slurm out", got)
	got, err = read(slurm.StreamFile, app.StreamStderr)
	require.NoError(t, err)
	require.Equal(t, "slurm err", got)
	got, err = read(local.StreamFile, app.StreamStdout)
	require.NoError(t, err)
	require.Equal(t, "local out", got)
	_, err = read(local.StreamFile, app.StreamStderr)
	require.ErrorIs(t, err, app.ErrOutsideOutputs)
}

func TestNewChecksItsArguments(t *testing.T) {
	t.Parallel()
	_, err := outputdir.New("relative", local.StreamFile)
	require.Error(t, err)
	_, err = outputdir.New("/abs", nil)
	require.Error(t, err)
}

func TestListBoundsItsWalk(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dir := filepath.Join(root, jobID)
	for i := range 50 {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "empty", strconv.Itoa(i)), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "z.txt"), []byte("z"), 0o644))
	d, err := outputdir.New(root, local.StreamFile)
	require.NoError(t, err)
	files, truncated, err := d.List(context.Background(), jobID, 2)
	require.NoError(t, err)
	require.True(t, truncated, "52 directories are more than 2 files' worth of walking")
	require.Empty(t, files, "the walk stopped among the directories")
	files, truncated, err = d.List(context.Background(), jobID, 100)
	require.NoError(t, err)
	require.False(t, truncated)
	require.Len(t, files, 1)
}
