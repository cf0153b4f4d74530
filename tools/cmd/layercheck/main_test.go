package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

const svc = "github.com/cosmic-horizons/fleet/services/metrics-consumer"

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pkgs []Package
		want []string
	}{
		{
			name: "app importing an adapter, as the metrics-consumer did",
			pkgs: []Package{{
				ImportPath: svc + "/internal/app",
				Imports:    []string{"context", "database/sql", svc + "/internal/adapters", svc + "/internal/domain"},
				Deps:       []string{"context", "database/sql", svc + "/internal/adapters", svc + "/internal/domain"},
			}},
			want: []string{
				svc + "/internal/app imports database/sql (layer app must not import it)",
				svc + "/internal/app imports " + svc + "/internal/adapters (layer app must not depend on adapters)",
			},
		},
		{
			name: "app reaching an adapter through another package",
			pkgs: []Package{{
				ImportPath: svc + "/internal/app",
				Imports:    []string{svc + "/internal/render"},
				Deps:       []string{svc + "/internal/render", svc + "/internal/adapters/store"},
			}},
			want: []string{svc + "/internal/app depends on " + svc + "/internal/adapters/store through its imports (layer app must not depend on adapters)"},
		},
		{
			name: "a sub-package of domain importing app",
			pkgs: []Package{{
				ImportPath: svc + "/internal/domain/rules",
				Imports:    []string{svc + "/internal/app"},
				Deps:       []string{svc + "/internal/app"},
			}},
			want: []string{svc + "/internal/domain/rules imports " + svc + "/internal/app (layer domain must not depend on app)"},
		},
		{
			name: "the allowed directions",
			pkgs: []Package{
				{ImportPath: svc + "/internal/app", Imports: []string{svc + "/internal/domain", "github.com/cosmic-horizons/fleet/libs/inbox"},
					Deps: []string{svc + "/internal/domain", "github.com/cosmic-horizons/fleet/libs/inbox", "database/sql"}},
				{ImportPath: svc + "/internal/adapters", Imports: []string{"database/sql", svc + "/internal/app", svc + "/internal/domain"},
					Deps: []string{"database/sql", svc + "/internal/app", svc + "/internal/domain"}},
				{ImportPath: svc + "/internal/service", Imports: []string{svc + "/internal/adapters", svc + "/internal/app"},
					Deps: []string{svc + "/internal/adapters", svc + "/internal/app"}},
			},
		},
		{
			name: "another module's adapters are not this module's layer",
			pkgs: []Package{{
				ImportPath: svc + "/internal/app",
				Imports:    []string{"github.com/cosmic-horizons/fleet/libs/internal/adapters"},
				Deps:       []string{"github.com/cosmic-horizons/fleet/libs/internal/adapters"},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, v := range Check(tt.pkgs) {
				got = append(got, v.String())
			}
			require.Equal(t, tt.want, got)
		})
	}
}

// TestRunOnTree runs the check on a small module laid out like a service
// whose app imports its adapters, then on the fixed layout.
func TestRunOnTree(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(path, body string) {
		t.Helper()
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, path)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, path), []byte(body), 0o644))
	}
	write("go.work", "go 1.26.0\n\nuse ./services/demo\n")
	write("services/demo/go.mod", "module example.com/demo\n\ngo 1.26.0\n")
	write("services/demo/internal/adapters/store.go", "package adapters\n\ntype Store struct{}\n\nfunc (Store) Get() string { return \"x\" }\n")
	write("services/demo/internal/app/app.go", "package app\n\nimport \"example.com/demo/internal/adapters\"\n\nfunc Use(s adapters.Store) string { return s.Get() }\n")

	var out bytes.Buffer
	code, err := run(context.Background(), []string{"-root", root}, &out)
	require.NoError(t, err)
	require.Equal(t, 1, code, out.String())
	require.Contains(t, out.String(), "example.com/demo/internal/app imports example.com/demo/internal/adapters")

	write("services/demo/internal/app/app.go", "package app\n\ntype Getter interface{ Get() string }\n\nfunc Use(s Getter) string { return s.Get() }\n")
	out.Reset()
	code, err = run(context.Background(), []string{"-root", root}, &out)
	require.NoError(t, err)
	require.Equal(t, 0, code, out.String())
	require.Contains(t, out.String(), "no forbidden dependencies")
}
