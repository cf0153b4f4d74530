package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// jobFile is a job file of `chctl jobs submit -f`, in YAML or JSON (see
// docs/job-files.md): one job, or with a sweep section a template whose
// string fields are expanded once per point of the parameter grid.
type jobFile struct {
	Name           string            `yaml:"name"`
	Agent          string            `yaml:"agent"`
	Dataset        string            `yaml:"dataset"`
	System         string            `yaml:"system"`
	Partition      string            `yaml:"partition"`
	Allocation     string            `yaml:"allocation"`
	Priority       string            `yaml:"priority"`
	Resources      jobFileResources  `yaml:"resources"`
	Script         string            `yaml:"script"`
	ScriptFile     string            `yaml:"script_file"`
	Command        string            `yaml:"command"`
	Environment    map[string]string `yaml:"environment"`
	Tags           []string          `yaml:"tags"`
	IdempotencyKey string            `yaml:"idempotency_key"`
	Sweep          *jobFileSweep     `yaml:"sweep"`
}

type jobFileResources struct {
	Nodes    int32  `yaml:"nodes"`
	Cores    int32  `yaml:"cores_per_node"`
	GPUs     int32  `yaml:"gpus_per_node"`
	MemoryMB int64  `yaml:"memory_mb"`
	Walltime string `yaml:"walltime"`
}

type jobFileSweep struct {
	Name       string                 `yaml:"name"`
	Parameters map[string][]yaml.Node `yaml:"parameters"`
}

// Limits of a sweep, checked before anything is submitted.
const (
	maxSweepJobs    = 1000
	maxSweepNameLen = 58 // "sweep:" + name is a tag of at most 64 characters
)

var (
	sweepNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	paramNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// plannedJob is one submission a job file asks for.
type plannedJob struct {
	key  string
	spec *jobpb.JobSpec
	// point is the sweep point, "lr=0.1 seed=1"; empty for a single job.
	point string
}

// loadJobFile reads and checks a job file. A relative script_file is
// relative to the job file's directory.
func loadJobFile(path string) (*jobFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f jobFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.ScriptFile != "" {
		if f.Script != "" || f.Command != "" {
			return nil, fmt.Errorf("%s: set one of script, script_file and command", path)
		}
		sf := f.ScriptFile
		if !filepath.IsAbs(sf) {
			sf = filepath.Join(filepath.Dir(path), sf)
		}
		s, err := os.ReadFile(sf)
		if err != nil {
			return nil, fmt.Errorf("%s: script_file: %w", path, err)
		}
		f.Script, f.ScriptFile = string(s), ""
	}
	return &f, nil
}

// plan turns the file into the submissions it asks for: one job (with the
// file's idempotency_key, else defaultKey), or one job per sweep point with
// a key derived from the sweep's name and the point, tagged sweep:<name>.
func (f *jobFile) plan(defaultKey string) ([]plannedJob, error) {
	if f.Sweep == nil {
		spec, err := f.spec(nil)
		if err != nil {
			return nil, err
		}
		key := f.IdempotencyKey
		if key == "" {
			key = defaultKey
		}
		return []plannedJob{{key: key, spec: spec}}, nil
	}
	s := f.Sweep
	switch {
	case s.Name == "" || len(s.Name) > maxSweepNameLen || !sweepNameRe.MatchString(s.Name):
		return nil, fmt.Errorf("sweep.name: required; 1 to %d letters, digits, '.', '_' and '-', starting with a letter or digit", maxSweepNameLen)
	case len(s.Parameters) == 0:
		return nil, fmt.Errorf("sweep.parameters: at least one parameter with a list of values")
	case f.IdempotencyKey != "":
		return nil, fmt.Errorf("idempotency_key: a sweep derives one key per job from its name; leave it out")
	}
	names := slices.Sorted(maps.Keys(s.Parameters))
	values := make(map[string][]string, len(names))
	points := 1
	for _, n := range names {
		if !paramNameRe.MatchString(n) {
			return nil, fmt.Errorf("sweep.parameters.%s: a name is letters, digits and '_', not starting with a digit (used as {{.%s}})", n, n)
		}
		if len(s.Parameters[n]) == 0 {
			return nil, fmt.Errorf("sweep.parameters.%s: at least one value", n)
		}
		for i, raw := range s.Parameters[n] {
			v, err := scalar(raw)
			if err != nil {
				return nil, fmt.Errorf("sweep.parameters.%s[%d]: %w", n, i, err)
			}
			if slices.Contains(values[n], v) {
				return nil, fmt.Errorf("sweep.parameters.%s[%d]: duplicate value %q", n, i, v)
			}
			values[n] = append(values[n], v)
		}
		points *= len(values[n])
		if points > maxSweepJobs {
			return nil, fmt.Errorf("sweep: more than %d jobs; split it into several sweeps", maxSweepJobs)
		}
	}
	tag := "sweep:" + s.Name
	var out []plannedJob
	for _, point := range grid(names, values) {
		spec, err := f.spec(point)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(spec.Tags, tag) {
			spec.Tags = append(spec.Tags, tag)
		}
		out = append(out, plannedJob{key: sweepKey(s.Name, names, point), spec: spec, point: pointString(names, point)})
	}
	return out, nil
}

// scalar returns one parameter value as the file writes it: a string,
// number or boolean.
func scalar(n yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", fmt.Errorf("line %d: want a string, number or boolean", n.Line)
	}
	return n.Value, nil
}

// grid is the cartesian product of the values, the last name varying
// fastest.
func grid(names []string, values map[string][]string) []map[string]string {
	out := []map[string]string{{}}
	for _, n := range names {
		var next []map[string]string
		for _, p := range out {
			for _, v := range values[n] {
				q := maps.Clone(p)
				q[n] = v
				next = append(next, q)
			}
		}
		out = next
	}
	return out
}

func pointString(names []string, point map[string]string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + point[n]
	}
	return strings.Join(parts, " ")
}

// sweepKey is the idempotency key of one point: the same sweep name and
// point give the same key, so that running the file again submits nothing
// twice.
func sweepKey(sweep string, names []string, point map[string]string) string {
	b, _ := json.Marshal(struct {
		Sweep string
		Point [][2]string
	}{sweep, func() [][2]string {
		var p [][2]string
		for _, n := range names {
			p = append(p, [2]string{n, point[n]})
		}
		return p
	}()})
	sum := sha256.Sum256(b)
	return "sweep:" + sweep + ":" + hex.EncodeToString(sum[:12])
}

// spec builds the job's spec, with {{.name}} in its string fields replaced
// by the point's values (point nil: no substitution).
func (f *jobFile) spec(point map[string]string) (*jobpb.JobSpec, error) {
	sub := func(field, s string) (string, error) {
		if point == nil || !strings.Contains(s, "{{") {
			return s, nil
		}
		t, err := template.New(field).Option("missingkey=error").Parse(s)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		var b strings.Builder
		if err := t.Execute(&b, point); err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		return b.String(), nil
	}
	var err error
	spec := &jobpb.JobSpec{Partition: f.Partition, Allocation: f.Allocation,
		Resources: &jobpb.Resources{Nodes: f.Resources.Nodes, CoresPerNode: f.Resources.Cores,
			GpusPerNode: f.Resources.GPUs, MemoryMb: f.Resources.MemoryMB}}
	if spec.Name, err = sub("name", f.Name); err != nil {
		return nil, err
	}
	if spec.DatasetId, err = sub("dataset", f.Dataset); err != nil {
		return nil, err
	}
	if spec.Agent, err = parseAgent(f.Agent); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if spec.TaccSystem, err = parseSystem(f.System); err != nil {
		return nil, fmt.Errorf("system: %w", err)
	}
	if spec.Priority, err = parsePriority(f.Priority); err != nil {
		return nil, fmt.Errorf("priority: %w", err)
	}
	if spec.Allocation == "" {
		spec.Allocation = os.Getenv(envAllocation)
		if spec.Allocation == "" {
			spec.Allocation = defaultAlloc
		}
	}
	custom := spec.Agent == jobpb.Agent_AGENT_CUSTOM
	if spec.Resources.Nodes == 0 {
		spec.Resources.Nodes = 1
	}
	if spec.Resources.CoresPerNode == 0 && custom {
		spec.Resources.CoresPerNode = 1
	}
	switch {
	case f.Resources.Walltime != "":
		d, err := time.ParseDuration(f.Resources.Walltime)
		if err != nil {
			return nil, fmt.Errorf("resources.walltime: %w", err)
		}
		spec.Resources.Walltime = durationpb.New(d)
	case custom:
		spec.Resources.Walltime = durationpb.New(time.Hour)
	}
	switch {
	case f.Script != "" && f.Command != "":
		return nil, fmt.Errorf("set one of script, script_file and command")
	case f.Script != "":
		s, err := sub("script", f.Script)
		if err != nil {
			return nil, err
		}
		spec.Payload = &jobpb.JobSpec_Script{Script: s}
	case f.Command != "":
		c, err := sub("command", f.Command)
		if err != nil {
			return nil, err
		}
		spec.Payload = &jobpb.JobSpec_Command{Command: c}
	}
	if len(f.Environment) > 0 {
		spec.Environment = make(map[string]string, len(f.Environment))
		for k, v := range f.Environment {
			if spec.Environment[k], err = sub("environment."+k, v); err != nil {
				return nil, err
			}
		}
	}
	for i, tag := range f.Tags {
		t, err := sub(fmt.Sprintf("tags[%d]", i), tag)
		if err != nil {
			return nil, err
		}
		spec.Tags = append(spec.Tags, t)
	}
	return spec, nil
}
