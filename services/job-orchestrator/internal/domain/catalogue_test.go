package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

func TestDefaultCatalogue(t *testing.T) {
	t.Parallel()
	cat := domain.DefaultCatalogue()
	for _, name := range []string{domain.SystemFrontera, domain.SystemStampede3, domain.SystemLonestar6, domain.SystemVista} {
		sys, ok := cat.System(name)
		require.True(t, ok, name)
		require.NotEmpty(t, sys.Partitions, name)
	}
	p, ok := func() (domain.Partition, bool) { s, _ := cat.System("lonestar6"); return s.Partition("gpu-a100") }()
	require.True(t, ok)
	require.Equal(t, int32(3), p.GPUsPerNode)
	require.Equal(t, 48*time.Hour, p.MaxWalltime)
	_, ok = cat.System("summit")
	require.False(t, ok)
}

func TestParseCatalogue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{name: "override", doc: `{"systems":[{"name":"vista","partitions":[{"name":"gh","max_nodes":4,"max_walltime":"12h","cores_per_node":72,"gpus_per_node":1,"memory_mb":100000}]}]}`},
		{name: "unknown system", doc: `{"systems":[{"name":"summit","partitions":[]}]}`, wantErr: "not a TACC system"},
		{name: "walltime too long", doc: `{"systems":[{"name":"vista","partitions":[{"name":"gh","max_nodes":4,"max_walltime":"72h","cores_per_node":72,"gpus_per_node":1,"memory_mb":100000}]}]}`, wantErr: "max_walltime"},
		{name: "bad duration", doc: `{"systems":[{"name":"vista","partitions":[{"name":"gh","max_nodes":4,"max_walltime":"soon","cores_per_node":72,"gpus_per_node":1,"memory_mb":100000}]}]}`, wantErr: "max_walltime"},
		{name: "no cores", doc: `{"systems":[{"name":"vista","partitions":[{"name":"gh","max_nodes":4,"max_walltime":"1h","cores_per_node":0,"gpus_per_node":1,"memory_mb":100000}]}]}`, wantErr: "cores_per_node"},
		{name: "duplicate partition", doc: `{"systems":[{"name":"vista","partitions":[{"name":"gh","max_nodes":4,"max_walltime":"1h","cores_per_node":1,"gpus_per_node":1,"memory_mb":1},{"name":"gh","max_nodes":4,"max_walltime":"1h","cores_per_node":1,"gpus_per_node":1,"memory_mb":1}]}]}`, wantErr: "twice"},
		{name: "empty", doc: `{"systems":[]}`, wantErr: "no systems"},
		{name: "not json", doc: `systems:`, wantErr: "parse catalogue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cat, err := domain.ParseCatalogue([]byte(tt.doc))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Len(t, cat.Systems(), 1)
		})
	}
	_, err := domain.ParseCatalogue(domain.DefaultCatalogueJSON())
	require.NoError(t, err)
}

func TestCatalogueSlurmEndpoints(t *testing.T) {
	t.Parallel()
	doc := `{"systems": [
		{"name": "frontera", "slurm": {"url": "https://frontera.example:6820", "user": "ast", "token_file": "/run/frontera.jwt", "api_version": "v0.0.42"},
		 "partitions": [{"name": "normal", "max_nodes": 1, "max_walltime": "1h", "cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024}]},
		{"name": "vista", "slurm": {"url": "http://127.0.0.1:7830", "user": "ast", "token_env": "VISTA_JWT"},
		 "partitions": [{"name": "gh", "max_nodes": 1, "max_walltime": "1h", "cores_per_node": 1, "gpus_per_node": 1, "memory_mb": 1024}]},
		{"name": "lonestar6",
		 "partitions": [{"name": "normal", "max_nodes": 1, "max_walltime": "1h", "cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024}]}
	]}`
	c, err := domain.ParseCatalogue([]byte(doc))
	require.NoError(t, err)
	f, _ := c.System("frontera")
	require.Equal(t, domain.SlurmEndpoint{URL: "https://frontera.example:6820", User: "ast", TokenFile: "/run/frontera.jwt", APIVersion: "v0.0.42"}, f.Slurm)
	v, _ := c.System("vista")
	require.Equal(t, "VISTA_JWT", v.Slurm.TokenEnv)
	l, _ := c.System("lonestar6")
	require.Zero(t, l.Slurm, "no endpoint: the default Slurm")

	for name, bad := range map[string]string{
		"scheme":     `{"url": "ftp://x", "user": "u"}`,
		"two tokens": `{"url": "http://x:1", "user": "u", "token_file": "/f", "token_env": "E"}`,
	} {
		_, err := domain.ParseCatalogue([]byte(`{"systems": [{"name": "frontera", "slurm": ` + bad +
			`, "partitions": [{"name": "normal", "max_nodes": 1, "max_walltime": "1h", "cores_per_node": 1, "gpus_per_node": 0, "memory_mb": 1024}]}]}`))
		require.Error(t, err, name)
	}
}
