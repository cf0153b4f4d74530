package local_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/envconf"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/scheduler/local"
)

func TestIDRangeUnmarshalText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     local.IDRange
		wantErr  bool
	}{
		{name: "range", in: "61000-61999", want: local.IDRange{First: 61000, Last: 61999}},
		{name: "spaces around the numbers", in: " 70000 - 70009 ", want: local.IDRange{First: 70000, Last: 70009}},
		{name: "one id", in: "7-7", want: local.IDRange{First: 7, Last: 7}},
		{name: "no dash", in: "61000", wantErr: true},
		{name: "reversed", in: "62000-61000", wantErr: true},
		{name: "zero first", in: "0-10", wantErr: true},
		{name: "negative", in: "-5-10", wantErr: true},
		{name: "not numbers", in: "a-b", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := local.IDRange{First: 1, Last: 2}
			err := got.UnmarshalText([]byte(tt.in))
			if tt.wantErr {
				require.ErrorContains(t, err, "want first-last")
				require.Equal(t, local.IDRange{First: 1, Last: 2}, got, "a bad range changes nothing")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// The env tags of Config drive the parsing: a bad range is an error of
// its variable.
func TestConfigEnvTags(t *testing.T) {
	t.Parallel()
	var c local.Config
	lookup := func(env map[string]string) envconf.Lookup {
		return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	require.NoError(t, envconf.Load(&c, lookup(map[string]string{
		"LOCAL_JOB_UID_RANGE": "70000-70009", "LOCAL_JOB_GID_RANGE": "80000-80009", "LOCAL_SINGLE_USER": "true",
		"LOCAL_CGROUP_PARENT": "fleet/jobs", "LOCAL_JOB_MAX_PROCESSES": "64", "LOCAL_JOB_MAX_OPEN_FILES": "256",
	})))
	require.Equal(t, local.IDRange{First: 70000, Last: 70009}, c.UIDs)
	require.Equal(t, local.IDRange{First: 80000, Last: 80009}, c.GIDs)
	require.True(t, c.SingleUser)
	require.Equal(t, "fleet/jobs", c.CgroupParent)
	require.Equal(t, int64(64), c.MaxProcesses)
	require.Equal(t, uint64(256), c.MaxOpenFiles)
	err := envconf.Load(&c, lookup(map[string]string{"LOCAL_JOB_GID_RANGE": "9-1"}))
	require.ErrorContains(t, err, `LOCAL_JOB_GID_RANGE="9-1": want first-last`)
	require.Equal(t, local.IDRange{First: 80000, Last: 80009}, c.GIDs, "a bad range changes nothing")
}
