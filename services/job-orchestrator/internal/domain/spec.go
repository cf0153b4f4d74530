package domain

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Agent names the pipeline a job runs.
type Agent string

// The agents. AgentCustom runs the user's own script or command.
const (
	AgentAlphaCal            Agent = "AlphaCal"
	AgentImageReconstruction Agent = "ImageReconstruction"
	AgentAnomalyDetection    Agent = "AnomalyDetection"
	AgentCustom              Agent = "Custom"
)

// Priority orders one user's jobs.
type Priority string

// The priorities.
const (
	PriorityLow    Priority = "LOW"
	PriorityNormal Priority = "NORMAL"
	PriorityHigh   Priority = "HIGH"
)

// Resources is what a job asks the scheduler for.
type Resources struct {
	Nodes        int32
	CoresPerNode int32
	GPUsPerNode  int32
	// MemoryMB is per node; 0 means the partition's default.
	MemoryMB int64
	Walltime time.Duration
}

// Spec is everything the submitter chooses about a job. Exactly one of
// Script and Command is set for a custom job; for the named agents both may
// be empty and the orchestrator generates the script (see LaunchPlan).
type Spec struct {
	Name        string
	Agent       Agent
	DatasetID   string
	System      string
	Partition   string
	Resources   Resources
	Script      string
	Command     string
	Environment map[string]string
	Priority    Priority
	Tags        []string
	Allocation  string
}

// Limits of a request, the same as the API contract documents.
const (
	MaxNameLen        = 128
	MaxDatasetIDLen   = 256
	MaxPartitionLen   = 64
	MaxNodes          = 1024
	MaxCoresPerNode   = 256
	MaxGPUsPerNode    = 8
	MaxMemoryMB       = 2 << 20 // 2 TiB in MiB
	MaxWalltime       = 48 * time.Hour
	MaxScriptBytes    = 64 << 10
	MaxCommandBytes   = 4096
	MaxEnvEntries     = 64
	MaxEnvKeyLen      = 128
	MaxEnvValueBytes  = 4096
	MaxTags           = 16
	MaxTagLen         = 64
	MaxIdempotencyLen = 128
	MaxReasonLen      = 512
)

// MinInstant and MaxInstant bound every instant a request may carry (a
// list filter's bounds): the stores keep instants as Unix nanoseconds,
// which end in 2262.
var (
	MinInstant = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxInstant = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ValidInstant reports whether t lies in [MinInstant, MaxInstant].
func ValidInstant(t time.Time) bool { return !t.Before(MinInstant) && !t.After(MaxInstant) }

var (
	nameRe        = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	datasetRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/+-]*$`)
	partitionRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	envKeyRe      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	allocationRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{1,63}$`)
	idempotencyRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)
)

// ReservedEnvPrefixes may not start a user environment key: SLURM_ belongs
// to the scheduler and FLEET_ to the script the orchestrator generates.
var ReservedEnvPrefixes = []string{"SLURM_", "FLEET_"}

// reservedEnvKeys may not be set by a user: they change how the shell,
// the dynamic linker or the batch system behave.
var reservedEnvKeys = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "SHELL": true, "PWD": true,
	"OLDPWD": true, "IFS": true, "ENV": true, "BASH_ENV": true, "CDPATH": true,
	"SHELLOPTS": true, "BASHOPTS": true, "GLOBIGNORE": true, "PROMPT_COMMAND": true,
	"PS4": true, "TMPDIR": true, "LD_PRELOAD": true, "LD_LIBRARY_PATH": true,
	"LD_AUDIT": true, "HOSTNAME": true,
}

// ReservedEnvKey reports whether a user may not set the environment key k.
func ReservedEnvKey(k string) bool {
	if reservedEnvKeys[strings.ToUpper(k)] {
		return true
	}
	for _, p := range ReservedEnvPrefixes {
		if strings.HasPrefix(strings.ToUpper(k), p) {
			return true
		}
	}
	return false
}

// ValidIdempotencyKey reports whether key has the accepted format: 1 to 128
// characters of letters, digits, '.', '_', ':' and '-', starting with a
// letter or digit (a UUID fits).
func ValidIdempotencyKey(key string) bool { return idempotencyRe.MatchString(key) }

// ValidateIdempotencyKey returns a violation of field "idempotency_key".
func ValidateIdempotencyKey(key string) error {
	if !ValidIdempotencyKey(key) {
		return Invalid("idempotency_key", "required; 1 to %d characters of letters, digits, '.', '_', ':' and '-', starting with a letter or digit", MaxIdempotencyLen)
	}
	return nil
}

// ApplyDefaults fills what the submitter left out: NORMAL priority and, for
// the named agents, the agent's profile (see AgentProfiles): one node, and
// cores, GPUs and memory when the submitter set none of the three, and the
// profile's walltime when none was given. Call it before Validate.
func (s *Spec) ApplyDefaults() {
	if s.Priority == "" {
		s.Priority = PriorityNormal
	}
	prof, ok := AgentProfiles()[s.Agent]
	if !ok {
		return
	}
	r := &s.Resources
	if r.Nodes == 0 {
		r.Nodes = 1
	}
	if r.CoresPerNode == 0 && r.GPUsPerNode == 0 && r.MemoryMB == 0 {
		r.CoresPerNode, r.GPUsPerNode, r.MemoryMB = prof.CoresPerNode, prof.GPUsPerNode, prof.MemoryMB
	}
	if r.Walltime == 0 {
		r.Walltime = prof.Walltime
	}
}

// Validate checks the spec against the API's limits and the catalogue and
// returns a *ValidationError listing every violation (not just the first),
// with field paths under prefix (e.g. "spec").
func (s *Spec) Validate(cat *Catalogue, prefix string) error {
	var v violations
	f := func(name string) string { return prefix + "." + name }

	switch n := utf8.RuneCountInString(s.Name); {
	case n == 0:
		v.add(f("name"), "required")
	case n > MaxNameLen:
		v.add(f("name"), "at most %d characters", MaxNameLen)
	case !nameRe.MatchString(s.Name):
		v.add(f("name"), "only letters, digits, '-', '_' and '.'")
	}

	custom := s.Agent == AgentCustom
	switch s.Agent {
	case AgentAlphaCal, AgentImageReconstruction, AgentAnomalyDetection, AgentCustom:
	case "":
		v.add(f("agent"), "required")
	default:
		v.add(f("agent"), "unknown agent %q", s.Agent)
	}

	switch {
	case s.DatasetID == "" && !custom:
		v.add(f("dataset_id"), "required for agent %s", s.Agent)
	case len(s.DatasetID) > MaxDatasetIDLen:
		v.add(f("dataset_id"), "at most %d characters", MaxDatasetIDLen)
	case s.DatasetID != "" && !datasetRe.MatchString(s.DatasetID):
		v.add(f("dataset_id"), "letters, digits and '.', '_', ':', '/', '+', '-', starting with a letter or digit")
	}

	sys, sysOK := cat.System(s.System)
	switch {
	case s.System == "":
		v.add(f("tacc_system"), "required")
	case !sysOK:
		v.add(f("tacc_system"), "system %q is not in the catalogue", s.System)
	}

	var part Partition
	partOK := false
	switch {
	case s.Partition == "":
		v.add(f("partition"), "required")
	case !partitionRe.MatchString(s.Partition):
		v.add(f("partition"), "1 to %d characters of letters, digits, '.', '_' and '-'", MaxPartitionLen)
	case sysOK:
		if part, partOK = sys.Partition(s.Partition); !partOK {
			v.add(f("partition"), "system %s has no partition %q (has %s)", s.System, s.Partition, strings.Join(sys.PartitionNames(), ", "))
		}
	}

	s.validateResources(&v, f, part, partOK)
	s.validatePayload(&v, f, custom)
	s.validateEnvironment(&v, f)

	switch s.Priority {
	case PriorityLow, PriorityNormal, PriorityHigh:
	default:
		v.add(f("priority"), "unknown priority %q", s.Priority)
	}

	if len(s.Tags) > MaxTags {
		v.add(f("tags"), "at most %d tags", MaxTags)
	}
	seen := map[string]bool{}
	for i, t := range s.Tags {
		field := f("tags") + "[" + strconv.Itoa(i) + "]"
		switch n := utf8.RuneCountInString(t); {
		case n == 0 || n > MaxTagLen:
			v.add(field, "1 to %d characters", MaxTagLen)
		case !printableNoSpace(t):
			v.add(field, "printable characters without spaces only")
		case seen[t]:
			v.add(field, "duplicate tag %q", t)
		}
		seen[t] = true
	}

	switch {
	case s.Allocation == "":
		v.add(f("allocation"), "required")
	case !allocationRe.MatchString(s.Allocation):
		v.add(f("allocation"), "2 to 64 characters of letters, digits, '_' and '-', e.g. AST21001")
	}
	return v.err()
}

func (s *Spec) validateResources(v *violations, f func(string) string, part Partition, partOK bool) {
	r := s.Resources
	rf := func(n string) string { return f("resources." + n) }
	maxNodes := int32(MaxNodes)
	if partOK {
		maxNodes = min(maxNodes, part.MaxNodes)
	}
	if r.Nodes < 1 || r.Nodes > maxNodes {
		v.add(rf("nodes"), "must be 1 to %d%s", maxNodes, partNote(partOK, part))
	}
	maxCores := int32(MaxCoresPerNode)
	if partOK {
		maxCores = min(maxCores, part.CoresPerNode)
	}
	if r.CoresPerNode < 1 || r.CoresPerNode > maxCores {
		v.add(rf("cores_per_node"), "must be 1 to %d%s", maxCores, partNote(partOK, part))
	}
	maxGPUs := int32(MaxGPUsPerNode)
	if partOK {
		maxGPUs = min(maxGPUs, part.GPUsPerNode)
	}
	if r.GPUsPerNode < 0 || r.GPUsPerNode > maxGPUs {
		if partOK && part.GPUsPerNode == 0 {
			v.add(rf("gpus_per_node"), "partition %s has no GPUs", part.Name)
		} else {
			v.add(rf("gpus_per_node"), "must be 0 to %d%s", maxGPUs, partNote(partOK, part))
		}
	}
	maxMem := int64(MaxMemoryMB)
	if partOK {
		maxMem = min(maxMem, part.MemoryMB)
	}
	if r.MemoryMB < 0 || r.MemoryMB > maxMem {
		v.add(rf("memory_mb"), "must be 0 (partition default) to %d%s", maxMem, partNote(partOK, part))
	}
	maxWall := MaxWalltime
	if partOK {
		maxWall = min(maxWall, part.MaxWalltime)
	}
	switch {
	case r.Walltime <= 0:
		v.add(rf("walltime"), "required and more than zero")
	case r.Walltime%time.Second != 0:
		v.add(rf("walltime"), "whole seconds only")
	case r.Walltime > maxWall:
		v.add(rf("walltime"), "at most %s%s", maxWall, partNote(partOK, part))
	}
}

func partNote(ok bool, p Partition) string {
	if !ok {
		return ""
	}
	return " on partition " + p.Name
}

func (s *Spec) validatePayload(v *violations, f func(string) string, custom bool) {
	switch {
	case s.Script != "" && s.Command != "":
		v.add(f("payload"), "set either script or command, not both")
		return
	case s.Script == "" && s.Command == "" && custom:
		v.add(f("payload"), "a custom job needs a script or a command")
		return
	}
	if s.Script != "" {
		switch {
		case len(s.Script) > MaxScriptBytes:
			v.add(f("script"), "at most %d bytes, got %d", MaxScriptBytes, len(s.Script))
		case !utf8.ValidString(s.Script) || strings.ContainsRune(s.Script, 0):
			v.add(f("script"), "must be UTF-8 text without NUL bytes")
		case !strings.HasPrefix(s.Script, "#!"):
			v.add(f("script"), "must start with an interpreter line (#!)")
		}
	}
	if s.Command != "" {
		switch {
		case len(s.Command) > MaxCommandBytes:
			v.add(f("command"), "at most %d bytes, got %d", MaxCommandBytes, len(s.Command))
		case !utf8.ValidString(s.Command) || strings.ContainsAny(s.Command, "\x00\n\r"):
			v.add(f("command"), "must be one line of UTF-8 text")
		default:
			if _, err := SplitCommand(s.Command); err != nil {
				v.add(f("command"), "%v", err)
			}
		}
	}
}

func (s *Spec) validateEnvironment(v *violations, f func(string) string) {
	if len(s.Environment) > MaxEnvEntries {
		v.add(f("environment"), "at most %d entries", MaxEnvEntries)
	}
	keys := make([]string, 0, len(s.Environment))
	for k := range s.Environment {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		field := f("environment") + "[" + k + "]"
		val := s.Environment[k]
		switch {
		case len(k) > MaxEnvKeyLen || !envKeyRe.MatchString(k):
			v.add(field, "key must match [A-Za-z_][A-Za-z0-9_]* and have at most %d characters", MaxEnvKeyLen)
		case ReservedEnvKey(k):
			v.add(field, "key is reserved (%s, or a prefix of %s)", k, strings.Join(ReservedEnvPrefixes, ", "))
		case len(val) > MaxEnvValueBytes:
			v.add(field, "value at most %d bytes", MaxEnvValueBytes)
		case !utf8.ValidString(val) || strings.ContainsRune(val, 0):
			v.add(field, "value must be UTF-8 text without NUL bytes")
		}
	}
}

func printableNoSpace(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}
