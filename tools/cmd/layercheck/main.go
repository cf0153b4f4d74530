// Command layercheck enforces the layering of the services: in every
// service module, a package under internal/app (the use cases) depends on
// no package under internal/adapters, and a package under internal/domain
// depends on none of internal/app, internal/ports, internal/adapters and
// internal/service. Use cases declare the interfaces they need; the
// adapters implement them and internal/service wires the two.
//
// Usage:
//
//	layercheck [-root DIR] [PATTERN...]
//
// It lists the packages matching the patterns (default every service module,
// ./services/<svc>/...) with
// `go list -json` in DIR (default the current directory, the repository
// root with its go.work), checks their non-test dependencies, direct and
// transitive, and that none of them imports database/sql directly, prints one line per forbidden dependency and exits 1 if there
// is any.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	code, err := run(context.Background(), os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "layercheck:", err)
	}
	os.Exit(code)
}

// forbidden maps a layer to the layers of its own module it must not
// depend on.
var forbidden = map[string][]string{
	"app":    {"adapters"},
	"domain": {"app", "ports", "adapters", "service"},
}

// forbiddenImports maps a layer to the packages it must not import
// directly: use cases see their transactions through interfaces they
// declare (the inbox's unit of work, a repository), never a *sql.Tx.
var forbiddenImports = map[string][]string{
	"app":    {"database/sql"},
	"domain": {"database/sql"},
}

// Package is the part of `go list -json` the check reads.
type Package struct {
	ImportPath string
	Imports    []string // direct, without tests
	Deps       []string // transitive, without tests
}

// Violation is one forbidden dependency.
type Violation struct {
	From, To string
	Direct   bool
}

func (v Violation) String() string {
	switch {
	case layer(v.To) == "":
		return fmt.Sprintf("%s imports %s (layer %s must not import it)", v.From, v.To, layer(v.From))
	case v.Direct:
		return fmt.Sprintf("%s imports %s (layer %s must not depend on %s)", v.From, v.To, layer(v.From), layer(v.To))
	}
	return fmt.Sprintf("%s depends on %s through its imports (layer %s must not depend on %s)", v.From, v.To, layer(v.From), layer(v.To))
}

// layer returns the layer of an import path: the path element after the
// last "internal" element (app, domain, adapters, ports, service, ...), or
// "" for a path outside any internal tree.
func layer(path string) string {
	elems := strings.Split(path, "/")
	for i := len(elems) - 2; i >= 0; i-- {
		if elems[i] == "internal" {
			return elems[i+1]
		}
	}
	return ""
}

// module returns the part of path before its last "/internal/" element,
// so that a rule applies within one service module.
func module(path string) string {
	elems := strings.Split(path, "/")
	for i := len(elems) - 2; i >= 0; i-- {
		if elems[i] == "internal" {
			return strings.Join(elems[:i], "/")
		}
	}
	return path
}

// Check returns the forbidden dependencies of pkgs, sorted.
func Check(pkgs []Package) []Violation {
	var out []Violation
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if slices.Contains(forbiddenImports[layer(p.ImportPath)], imp) {
				out = append(out, Violation{From: p.ImportPath, To: imp, Direct: true})
			}
		}
		banned := forbidden[layer(p.ImportPath)]
		for _, d := range p.Deps {
			if module(d) != module(p.ImportPath) || !slices.Contains(banned, layer(d)) {
				continue
			}
			out = append(out, Violation{From: p.ImportPath, To: d, Direct: slices.Contains(p.Imports, d)})
		}
	}
	slices.SortFunc(out, func(a, b Violation) int {
		return strings.Compare(a.From+" "+a.To, b.From+" "+b.To)
	})
	return out
}

func run(ctx context.Context, args []string, stdout io.Writer) (int, error) {
	fs := flag.NewFlagSet("layercheck", flag.ContinueOnError)
	root := fs.String("root", ".", "the repository root (where go.work is)")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	patterns := fs.Args()
	if len(patterns) == 0 {
		mods, err := filepath.Glob(filepath.Join(*root, "services", "*", "go.mod"))
		if err != nil || len(mods) == 0 {
			return 2, fmt.Errorf("no service modules under %s/services", *root)
		}
		for _, m := range mods {
			patterns = append(patterns, "./services/"+filepath.Base(filepath.Dir(m))+"/...")
		}
	}
	pkgs, err := list(ctx, *root, patterns)
	if err != nil {
		return 2, err
	}
	vs := Check(pkgs)
	for _, v := range vs {
		fmt.Fprintln(stdout, v)
	}
	if len(vs) > 0 {
		fmt.Fprintf(stdout, "layercheck: %d forbidden dependencies in %d packages\n", len(vs), len(pkgs))
		return 1, nil
	}
	fmt.Fprintf(stdout, "layercheck: %d packages, no forbidden dependencies\n", len(pkgs))
	return 0, nil
}

// list runs `go list -json` over patterns in dir.
func list(ctx context.Context, dir string, patterns []string) ([]Package, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"list", "-json=ImportPath,Imports,Deps"}, patterns...)...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go list %s: %w: %s", strings.Join(patterns, " "), err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []Package
	dec := json.NewDecoder(&stdout)
	for {
		var p Package
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("go list %s: no packages", strings.Join(patterns, " "))
	}
	return pkgs, nil
}
