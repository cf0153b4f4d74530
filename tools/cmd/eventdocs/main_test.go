package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEventsDocIsCurrent fails when docs/events.md is not what the generator
// writes from the current schemas and topic catalogue.
func TestEventsDocIsCurrent(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, render(&buf))
	got := buf.String()
	require.Contains(t, got, "## Topic `job-lifecycle`")
	require.Contains(t, got, "`job.submitted`")

	want, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "events.md"))
	require.NoError(t, err, "generate it: go run ./tools/cmd/eventdocs > docs/events.md")
	if string(want) != got {
		gotLines, wantLines := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gotLines), len(wantLines)) {
			if gotLines[i] != wantLines[i] {
				t.Fatalf("docs/events.md is stale at line %d:\n  file: %s\n  generated: %s\nregenerate: go run ./tools/cmd/eventdocs > docs/events.md",
					i+1, wantLines[i], gotLines[i])
			}
		}
		t.Fatalf("docs/events.md is stale (%d lines, generated %d)\nregenerate: go run ./tools/cmd/eventdocs > docs/events.md",
			len(wantLines), len(gotLines))
	}
}
