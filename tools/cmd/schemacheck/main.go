// Command schemacheck verifies that every Avro schema of the fleet stays FULL
// compatible as it evolves: each version vN of a topic must read data written
// with vN-1 and the reverse, and every schema file must stay compatible with
// its own content at a git revision (default HEAD~1). A file that does not
// exist at that revision is new and passes.
//
// Usage:
//
//	schemacheck [-root DIR] [-against REF] [-no-git]
//
// It prints one line per check and exits 1 if any check fails, naming the
// path of the offending field.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"

	"github.com/cosmic-horizons/fleet/libs/events/avroschema"
	"github.com/cosmic-horizons/fleet/schemas"
	"github.com/cosmic-horizons/fleet/tools/internal/avrocompat"
)

func main() {
	code, err := run(context.Background(), os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "schemacheck:", err)
	}
	os.Exit(code)
}

// schemaDir is where the schemas live, relative to the repository root.
const schemaDir = "schemas"

type config struct {
	root    string
	against string
	noGit   bool
}

func run(ctx context.Context, args []string, out io.Writer) (int, error) {
	var cfg config
	fs := flag.NewFlagSet("schemacheck", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.root, "root", "", "repository root (default: the git top level of the working directory)")
	fs.StringVar(&cfg.against, "against", "HEAD~1", "git revision whose schema files the current ones must stay compatible with")
	fs.BoolVar(&cfg.noGit, "no-git", false, "only check consecutive in-tree versions")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if cfg.root == "" {
		top, err := git(ctx, ".", "rev-parse", "--show-toplevel")
		if err != nil {
			return 2, fmt.Errorf("find repository root (use -root): %w", err)
		}
		cfg.root = strings.TrimSpace(string(top))
	}
	failures, err := check(ctx, cfg, out)
	if err != nil {
		return 2, err
	}
	if failures > 0 {
		fmt.Fprintf(out, "FAIL: %d incompatible schema change(s)\n", failures)
		return 1, nil
	}
	fmt.Fprintln(out, "ok: all schemas are FULL compatible")
	return 0, nil
}

func check(ctx context.Context, cfg config, out io.Writer) (int, error) {
	fsys := os.DirFS(path.Join(cfg.root, schemaDir))
	topics, err := schemas.TopicsIn(fsys)
	if err != nil {
		return 0, err
	}
	useGit := !cfg.noGit
	if useGit {
		if _, err := git(ctx, cfg.root, "rev-parse", "--verify", "--quiet", cfg.against+"^{commit}"); err != nil {
			fmt.Fprintf(out, "note: revision %s does not exist; skipping the comparison with git\n", cfg.against)
			useGit = false
		}
	}
	failures := 0
	report := func(file, what string, problems []avrocompat.Incompatibility) {
		if len(problems) == 0 {
			fmt.Fprintf(out, "ok    %s: %s\n", file, what)
			return
		}
		failures++
		fmt.Fprintf(out, "FAIL  %s: %s\n", file, what)
		for _, p := range problems {
			fmt.Fprintf(out, "        %s\n", p)
		}
	}
	for _, topic := range topics {
		versions, err := schemas.VersionsIn(fsys, topic)
		if err != nil {
			return 0, err
		}
		var prev *avroschema.Schema
		for _, v := range versions {
			file := path.Join(schemaDir, v.Path)
			cur, err := avroschema.Parse(v.Schema)
			if err != nil {
				failures++
				fmt.Fprintf(out, "FAIL  %s: %v\n", file, err)
				prev = nil
				continue
			}
			if prev != nil {
				report(file, fmt.Sprintf("v%d -> v%d", v.Version-1, v.Version), avrocompat.CheckFull(prev, cur))
			} else if v.Version == 1 {
				fmt.Fprintf(out, "ok    %s: parses\n", file)
			}
			prev = cur
			if !useGit {
				continue
			}
			old, err := git(ctx, cfg.root, "show", cfg.against+":"+file)
			if err != nil {
				fmt.Fprintf(out, "ok    %s: new since %s\n", file, cfg.against)
				continue
			}
			if bytes.Equal(old, v.Schema) {
				fmt.Fprintf(out, "ok    %s: unchanged since %s\n", file, cfg.against)
				continue
			}
			was, err := avroschema.Parse(old)
			if err != nil {
				fmt.Fprintf(out, "ok    %s: content at %s did not parse (%v); nothing to stay compatible with\n", file, cfg.against, err)
				continue
			}
			report(file, "changed since "+cfg.against, avrocompat.CheckFull(was, cur))
		}
	}
	return failures, nil
}

func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return b, nil
}
