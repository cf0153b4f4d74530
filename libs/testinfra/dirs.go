package testinfra

import (
	"os"
	"testing"
)

// Modes of DirFor.
const (
	// Searchable lets other users (jobs' own uids) pass through the
	// directory to what they own inside it, without listing it.
	Searchable os.FileMode = 0o711
	// Shared lets every user write, like a scratch directory (sticky).
	Shared os.FileMode = os.ModeSticky | 0o777
)

// DirFor returns a new directory with mode, removed when t ends, for tests
// whose jobs run under other uids: t.TempDir's parent is private to its owner.
func DirFor(t testing.TB, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fleet-test-")
	if err != nil {
		t.Fatalf("directory for job users: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatalf("directory for job users: %v", err)
	}
	return dir
}
