package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const fixtures = "../../internal/avrocompat/testdata"

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
	require.NoError(t, os.WriteFile(to, b, 0o644))
}

func TestRunInTreeVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		v2       string
		wantCode int
		wantOut  string
	}{
		{name: "v2 adds optional field", v2: fixtures + "/job-lifecycle/v2.avsc", wantCode: 0, wantOut: "ok    schemas/avro/job-lifecycle/v2.avsc: v1 -> v2"},
		{name: "v2 adds required field", v2: fixtures + "/job-lifecycle-broken/v2.avsc", wantCode: 1,
			wantOut: "backward: payload[JobSubmitted].site: field is missing in the writer's JobSubmitted and has no default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			copyFile(t, fixtures+"/job-lifecycle/v1.avsc", filepath.Join(root, "schemas/avro/job-lifecycle/v1.avsc"))
			copyFile(t, tt.v2, filepath.Join(root, "schemas/avro/job-lifecycle/v2.avsc"))
			var out bytes.Buffer
			code, err := run(context.Background(), []string{"-root", root, "-no-git"}, &out)
			require.NoError(t, err)
			require.Equal(t, tt.wantCode, code, out.String())
			require.Contains(t, out.String(), tt.wantOut)
		})
	}
}

func TestRunAgainstGit(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required: %v", err)
	}
	root := t.TempDir()
	gitRun := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", root, "-c", "user.name=t", "-c", "user.email=t@example.org"}, args...)...)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, string(b))
	}
	file := filepath.Join(root, "schemas/avro/job-lifecycle/v1.avsc")
	gitRun("init", "-q")
	copyFile(t, fixtures+"/job-lifecycle/v1.avsc", file)
	gitRun("add", ".")
	gitRun("commit", "-q", "-m", "v1")

	// Editing the released v1 in place with a required field is caught.
	copyFile(t, fixtures+"/job-lifecycle-broken/v2.avsc", file)
	var out bytes.Buffer
	code, err := run(context.Background(), []string{"-root", root, "-against", "HEAD"}, &out)
	require.NoError(t, err)
	require.Equal(t, 1, code, out.String())
	require.Contains(t, out.String(), "FAIL  schemas/avro/job-lifecycle/v1.avsc: changed since HEAD")

	// An in-place edit adding an optional field passes; a missing revision is only a note.
	copyFile(t, fixtures+"/job-lifecycle/v2.avsc", file)
	out.Reset()
	code, err = run(context.Background(), []string{"-root", root, "-against", "HEAD"}, &out)
	require.NoError(t, err)
	require.Equal(t, 0, code, out.String())
	out.Reset()
	code, err = run(context.Background(), []string{"-root", root, "-against", "HEAD~5"}, &out)
	require.NoError(t, err)
	require.Equal(t, 0, code, out.String())
	require.Contains(t, out.String(), "note: revision HEAD~5 does not exist")
}
