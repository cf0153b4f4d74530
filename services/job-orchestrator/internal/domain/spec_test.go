package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

func validSpec() domain.Spec {
	return domain.Spec{
		Name:      "calib-run_1.a",
		Agent:     domain.AgentCustom,
		DatasetID: "VLASS2.1.ql.T10t01.J000228-363000",
		System:    domain.SystemLonestar6,
		Partition: "gpu-a100",
		Resources: domain.Resources{Nodes: 2, CoresPerNode: 64, GPUsPerNode: 2, MemoryMB: 65536, Walltime: time.Hour},
		Command:   "python3 -m calib --band L",
		Environment: map[string]string{
			"OMP_NUM_THREADS": "8",
			"rfi_strategy":    "high",
		},
		Priority:   domain.PriorityNormal,
		Tags:       []string{"vlass", "epoch-2"},
		Allocation: "AST21001",
	}
}

func TestSpecValidate(t *testing.T) {
	t.Parallel()
	cat := domain.DefaultCatalogue()
	tests := []struct {
		name   string
		mutate func(*domain.Spec)
		fields []string // every expected violation, in order
	}{
		{name: "valid", mutate: func(*domain.Spec) {}},
		{name: "valid script", mutate: func(s *domain.Spec) { s.Command, s.Script = "", "#!/bin/sh\necho hi\n" }},
		{name: "valid agent without payload", mutate: func(s *domain.Spec) { s.Agent, s.Command = domain.AgentAlphaCal, "" }},
		{name: "name empty", mutate: func(s *domain.Spec) { s.Name = "" }, fields: []string{"spec.name"}},
		{name: "name too long", mutate: func(s *domain.Spec) { s.Name = strings.Repeat("a", 129) }, fields: []string{"spec.name"}},
		{name: "name charset", mutate: func(s *domain.Spec) { s.Name = "a b;rm" }, fields: []string{"spec.name"}},
		{name: "agent missing", mutate: func(s *domain.Spec) { s.Agent = "" }, fields: []string{"spec.agent"}},
		{name: "agent unknown", mutate: func(s *domain.Spec) { s.Agent = "Nope" }, fields: []string{"spec.agent"}},
		{name: "dataset required for agent", mutate: func(s *domain.Spec) { s.Agent, s.DatasetID = domain.AgentAlphaCal, "" }, fields: []string{"spec.dataset_id"}},
		{name: "dataset optional for custom", mutate: func(s *domain.Spec) { s.DatasetID = "" }},
		{name: "dataset format", mutate: func(s *domain.Spec) { s.DatasetID = "$(reboot)" }, fields: []string{"spec.dataset_id"}},
		{name: "dataset too long", mutate: func(s *domain.Spec) { s.DatasetID = strings.Repeat("d", 257) }, fields: []string{"spec.dataset_id"}},
		{name: "system missing", mutate: func(s *domain.Spec) { s.System = "" }, fields: []string{"spec.tacc_system"}},
		{name: "system unknown", mutate: func(s *domain.Spec) { s.System = "summit" }, fields: []string{"spec.tacc_system"}},
		{name: "partition missing", mutate: func(s *domain.Spec) { s.Partition = "" }, fields: []string{"spec.partition"}},
		{name: "partition unknown", mutate: func(s *domain.Spec) { s.Partition = "gpu-z" }, fields: []string{"spec.partition"}},
		{name: "partition charset", mutate: func(s *domain.Spec) { s.Partition = "a b" }, fields: []string{"spec.partition"}},
		{name: "nodes zero", mutate: func(s *domain.Spec) { s.Resources.Nodes = 0 }, fields: []string{"spec.resources.nodes"}},
		{name: "nodes over partition", mutate: func(s *domain.Spec) { s.Resources.Nodes = 9 }, fields: []string{"spec.resources.nodes"}},
		{name: "cores over partition", mutate: func(s *domain.Spec) { s.Resources.CoresPerNode = 129 }, fields: []string{"spec.resources.cores_per_node"}},
		{name: "cores zero", mutate: func(s *domain.Spec) { s.Resources.CoresPerNode = 0 }, fields: []string{"spec.resources.cores_per_node"}},
		{name: "gpus over partition", mutate: func(s *domain.Spec) { s.Resources.GPUsPerNode = 4 }, fields: []string{"spec.resources.gpus_per_node"}},
		{name: "gpus on cpu partition", mutate: func(s *domain.Spec) { s.Partition = "normal" }, fields: []string{"spec.resources.gpus_per_node"}},
		{name: "gpus negative", mutate: func(s *domain.Spec) { s.Resources.GPUsPerNode = -1 }, fields: []string{"spec.resources.gpus_per_node"}},
		{name: "memory over node", mutate: func(s *domain.Spec) { s.Resources.MemoryMB = 262145 }, fields: []string{"spec.resources.memory_mb"}},
		{name: "memory negative", mutate: func(s *domain.Spec) { s.Resources.MemoryMB = -1 }, fields: []string{"spec.resources.memory_mb"}},
		{name: "walltime zero", mutate: func(s *domain.Spec) { s.Resources.Walltime = 0 }, fields: []string{"spec.resources.walltime"}},
		{name: "walltime fraction", mutate: func(s *domain.Spec) { s.Resources.Walltime = 1500 * time.Millisecond }, fields: []string{"spec.resources.walltime"}},
		{name: "walltime over partition", mutate: func(s *domain.Spec) { s.Partition, s.Resources.Walltime = "gpu-a100-dev", 3*time.Hour }, fields: []string{"spec.resources.walltime"}},
		{name: "walltime over 48h", mutate: func(s *domain.Spec) { s.Resources.Walltime = 49 * time.Hour }, fields: []string{"spec.resources.walltime"}},
		{name: "custom without payload", mutate: func(s *domain.Spec) { s.Command = "" }, fields: []string{"spec.payload"}},
		{name: "script and command", mutate: func(s *domain.Spec) { s.Script = "#!/bin/sh\n" }, fields: []string{"spec.payload"}},
		{name: "script too big", mutate: func(s *domain.Spec) { s.Command, s.Script = "", "#!/bin/sh\n"+strings.Repeat("#", 64<<10) }, fields: []string{"spec.script"}},
		{name: "script without shebang", mutate: func(s *domain.Spec) { s.Command, s.Script = "", "echo hi\n" }, fields: []string{"spec.script"}},
		{name: "script with NUL", mutate: func(s *domain.Spec) { s.Command, s.Script = "", "#!/bin/sh\n\x00" }, fields: []string{"spec.script"}},
		{name: "command too long", mutate: func(s *domain.Spec) { s.Command = strings.Repeat("x", 4097) }, fields: []string{"spec.command"}},
		{name: "command multi line", mutate: func(s *domain.Spec) { s.Command = "echo a\nreboot" }, fields: []string{"spec.command"}},
		{name: "command open quote", mutate: func(s *domain.Spec) { s.Command = "echo 'a" }, fields: []string{"spec.command"}},
		{name: "env key charset", mutate: func(s *domain.Spec) { s.Environment = map[string]string{"1BAD": "x"} }, fields: []string{"spec.environment[1BAD]"}},
		{name: "env key dash", mutate: func(s *domain.Spec) { s.Environment = map[string]string{"A-B": "x"} }, fields: []string{"spec.environment[A-B]"}},
		{name: "env reserved PATH", mutate: func(s *domain.Spec) { s.Environment = map[string]string{"PATH": "/tmp"} }, fields: []string{"spec.environment[PATH]"}},
		{name: "env reserved LD_PRELOAD", mutate: func(s *domain.Spec) { s.Environment = map[string]string{"LD_PRELOAD": "x.so"} }, fields: []string{"spec.environment[LD_PRELOAD]"}},
		{name: "env reserved SLURM_", mutate: func(s *domain.Spec) { s.Environment = map[string]string{"SLURM_JOB_ID": "1"} }, fields: []string{"spec.environment[SLURM_JOB_ID]"}},
		{name: "env reserved FLEET_", mutate: func(s *domain.Spec) { s.Environment = map[string]string{"FLEET_ARG_0": "rm"} }, fields: []string{"spec.environment[FLEET_ARG_0]"}},
		{name: "env value too big", mutate: func(s *domain.Spec) { s.Environment = map[string]string{"BIG": strings.Repeat("v", 4097)} }, fields: []string{"spec.environment[BIG]"}},
		{name: "env too many", mutate: func(s *domain.Spec) {
			s.Environment = map[string]string{}
			for i := range 65 {
				s.Environment["K"+strings.Repeat("X", i)] = "v"
			}
		}, fields: []string{"spec.environment"}},
		{name: "priority unknown", mutate: func(s *domain.Spec) { s.Priority = "URGENT" }, fields: []string{"spec.priority"}},
		{name: "too many tags", mutate: func(s *domain.Spec) {
			s.Tags = nil
			for i := range 17 {
				s.Tags = append(s.Tags, strings.Repeat("t", i+1))
			}
		}, fields: []string{"spec.tags"}},
		{name: "tag empty", mutate: func(s *domain.Spec) { s.Tags = []string{""} }, fields: []string{"spec.tags[0]"}},
		{name: "tag too long", mutate: func(s *domain.Spec) { s.Tags = []string{"ok", strings.Repeat("t", 65)} }, fields: []string{"spec.tags[1]"}},
		{name: "tag space", mutate: func(s *domain.Spec) { s.Tags = []string{"a b"} }, fields: []string{"spec.tags[0]"}},
		{name: "tag duplicate", mutate: func(s *domain.Spec) { s.Tags = []string{"a", "a"} }, fields: []string{"spec.tags[1]"}},
		{name: "allocation missing", mutate: func(s *domain.Spec) { s.Allocation = "" }, fields: []string{"spec.allocation"}},
		{name: "allocation charset", mutate: func(s *domain.Spec) { s.Allocation = "AST 1" }, fields: []string{"spec.allocation"}},
		{name: "everything wrong at once", mutate: func(s *domain.Spec) {
			*s = domain.Spec{Resources: domain.Resources{Nodes: -1, CoresPerNode: 999, GPUsPerNode: 99, MemoryMB: -5}, Priority: "X"}
		}, fields: []string{
			"spec.name", "spec.agent", "spec.dataset_id", "spec.tacc_system", "spec.partition",
			"spec.resources.nodes", "spec.resources.cores_per_node", "spec.resources.gpus_per_node",
			"spec.resources.memory_mb", "spec.resources.walltime", "spec.priority", "spec.allocation",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := validSpec()
			tt.mutate(&s)
			err := s.Validate(cat, "spec")
			if len(tt.fields) == 0 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, domain.ErrInvalidArgument)
			var ve *domain.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, tt.fields, ve.Fields())
			for _, v := range ve.Violations {
				require.NotEmpty(t, v.Description)
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		spec  domain.Spec
		want  domain.Resources
		valid bool
	}{
		{
			name:  "alphacal",
			spec:  domain.Spec{Agent: domain.AgentAlphaCal, System: "lonestar6", Partition: "gpu-a100"},
			want:  domain.Resources{Nodes: 1, CoresPerNode: 32, GPUsPerNode: 2, MemoryMB: 128 << 10, Walltime: 4 * time.Hour},
			valid: true,
		},
		{
			name:  "image reconstruction",
			spec:  domain.Spec{Agent: domain.AgentImageReconstruction, System: "stampede3", Partition: "h100"},
			want:  domain.Resources{Nodes: 1, CoresPerNode: 64, GPUsPerNode: 4, MemoryMB: 256 << 10, Walltime: 8 * time.Hour},
			valid: true,
		},
		{
			name:  "anomaly detection",
			spec:  domain.Spec{Agent: domain.AgentAnomalyDetection, System: "vista", Partition: "gh"},
			want:  domain.Resources{Nodes: 1, CoresPerNode: 16, GPUsPerNode: 1, MemoryMB: 64 << 10, Walltime: 2 * time.Hour},
			valid: true,
		},
		{
			name:  "explicit resources kept",
			spec:  domain.Spec{Agent: domain.AgentAlphaCal, System: "lonestar6", Partition: "gpu-a100", Resources: domain.Resources{Nodes: 2, CoresPerNode: 8, Walltime: time.Hour}},
			want:  domain.Resources{Nodes: 2, CoresPerNode: 8, Walltime: time.Hour},
			valid: true,
		},
		{
			name: "custom gets no resources",
			spec: domain.Spec{Agent: domain.AgentCustom, System: "lonestar6", Partition: "gpu-a100", Command: "true"},
			want: domain.Resources{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.spec
			s.Name, s.DatasetID, s.Allocation = "n", "ds-1", "AST21001"
			s.ApplyDefaults()
			require.Equal(t, tt.want, s.Resources)
			require.Equal(t, domain.PriorityNormal, s.Priority)
			err := s.Validate(domain.DefaultCatalogue(), "spec")
			if tt.valid {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		key   string
		valid bool
	}{
		{name: "uuid", key: "0190a3c2-7b7e-7c3d-9a0b-1234567890ab", valid: true},
		{name: "dotted", key: "retry.1:a_b", valid: true},
		{name: "empty", key: ""},
		{name: "space", key: "a b"},
		{name: "leading dash", key: "-a"},
		{name: "128", key: strings.Repeat("k", 128), valid: true},
		{name: "129", key: strings.Repeat("k", 129)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := domain.ValidateIdempotencyKey(tt.key)
			if tt.valid {
				require.NoError(t, err)
				return
			}
			var ve *domain.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, []string{"idempotency_key"}, ve.Fields())
		})
	}
}
