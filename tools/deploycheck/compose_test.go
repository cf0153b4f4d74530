package deploycheck_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/tools/deploycheck"
)

func loadCompose(t *testing.T, root string) *types.Project {
	t.Helper()
	dir := filepath.Join(root, "compose")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithWorkingDirectory(dir),
		cli.WithEnv(nil), // the host's environment must not change what is checked
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	return p
}

func TestComposeRunsTheFleet(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := loadCompose(t, root)
	require.Equal(t, "fleet", p.Name)

	for _, infra := range []string{"kafka", "rabbitmq", "postgres", "mailpit", "jaeger"} {
		s, err := p.GetService(infra)
		require.NoError(t, err, infra)
		require.NotNil(t, s.HealthCheck, "%s has a healthcheck", infra)
	}

	// Every dependency names a service; waiting for health needs a healthcheck.
	for _, s := range p.Services {
		for dep, cond := range s.DependsOn {
			d, err := p.GetService(dep)
			require.NoError(t, err, "%s depends on %s", s.Name, dep)
			switch cond.Condition {
			case types.ServiceConditionHealthy:
				require.NotNil(t, d.HealthCheck, "%s waits for %s to be healthy", s.Name, dep)
			case types.ServiceConditionCompletedSuccessfully, types.ServiceConditionStarted:
			default:
				t.Fatalf("%s depends on %s with condition %q", s.Name, dep, cond.Condition)
			}
		}
	}

	published := map[string]string{}
	var devSecret []string
	for _, svc := range deploycheck.Services() {
		t.Run(svc, func(t *testing.T) {
			code, err := deploycheck.ReadServiceCode(root, svc)
			require.NoError(t, err)
			s, err := p.GetService(svc)
			require.NoError(t, err)

			// Built from the one Dockerfile, context the repository root.
			require.NotNil(t, s.Build)
			require.Equal(t, root, s.Build.Context)
			require.Equal(t, "deploy/docker/Dockerfile", s.Build.Dockerfile)
			require.FileExists(t, filepath.Join(s.Build.Context, s.Build.Dockerfile))
			require.NotNil(t, s.Build.Args["SERVICE"])
			require.Equal(t, svc, *s.Build.Args["SERVICE"])
			require.DirExists(t, filepath.Join(root, "services", svc, "cmd", svc))

			// Waits for the brokers.
			for _, dep := range []string{"kafka", "rabbitmq"} {
				require.Equal(t, types.ServiceConditionHealthy, s.DependsOn[dep].Condition, "%s waits for %s", svc, dep)
			}

			// Ports: the code's, published on loopback only.
			targets := map[uint32]bool{}
			for _, port := range s.Ports {
				targets[port.Target] = true
				require.Equal(t, "127.0.0.1", port.HostIP)
				require.Equal(t, fmt.Sprint(port.Target), port.Published)
				require.NotContains(t, published, port.Published, "host port %s published twice", port.Published)
				published[port.Published] = svc
			}
			require.Equal(t, map[uint32]bool{uint32(code.GRPCPort): true, uint32(code.HTTPPort): true}, targets)

			// Environment: names the code reads; addresses name compose services.
			env := map[string]string{}
			for k, v := range s.Environment {
				require.NotNil(t, v, "%s has no value", k)
				require.True(t, code.Reads(k), "%s sets %s, which the code does not read", svc, k)
				env[k] = *v
			}
			require.Equal(t, fmt.Sprintf(":%d", code.GRPCPort), env["GRPC_ADDR"])
			require.Equal(t, fmt.Sprintf(":%d", code.HTTPPort), env["HTTP_ADDR"])
			for _, k := range required()[svc] {
				if k == "PAGE_TOKEN_KEY" || k == "AUDIT_SIGNING_KEY_FILE" {
					continue // generated per process when absent, which suits one local replica
				}
				require.Contains(t, env, k)
			}
			if slices.Contains(authenticated(), svc) {
				require.NotEmpty(t, env["AUTH_HS256_SECRET"], "%s verifies JWTs", svc)
				devSecret = append(devSecret, env["AUTH_HS256_SECRET"])
			} else {
				require.False(t, hasKeySource(env), "%s has no authentication", svc)
			}
			for k, v := range env {
				for _, host := range hostsIn(t, k, v) {
					target, err := p.GetService(host)
					require.NoError(t, err, "%s=%s names host %s", k, v, host)
					if target.Name != svc {
						require.Contains(t, s.DependsOn, host, "%s reaches %s (%s) and depends on it", svc, host, k)
					}
				}
			}
		})
	}
	require.Len(t, devSecret, len(authenticated()))
	require.Len(t, slices.Compact(devSecret), 1, "the services share one development secret")
}

// hostsIn returns the host names in the value of an address variable.
func hostsIn(t *testing.T, key, value string) []string {
	t.Helper()
	var addrs []string
	switch key {
	case "KAFKA_BROKERS":
		addrs = strings.Split(value, ",")
	case "SMTP_ADDR":
		addrs = []string{value}
	case "HEALTH_SERVICES", "DATABASE_URLS":
		for _, e := range strings.Split(value, ",") {
			_, a, ok := strings.Cut(e, "=")
			require.True(t, ok, "%s entry %q: want name=address", key, e)
			addrs = append(addrs, a)
		}
	case "AMQP_URL", "DATABASE_URL", "RABBITMQ_MGMT_URL", "OTEL_EXPORTER_OTLP_ENDPOINT":
		addrs = []string{value}
	default:
		return nil
	}
	var hosts []string
	for _, a := range addrs {
		if strings.Contains(a, "://") {
			u, err := url.Parse(a)
			require.NoError(t, err, "%s", key)
			hosts = append(hosts, u.Hostname())
			continue
		}
		h, _, err := net.SplitHostPort(a)
		require.NoError(t, err, "%s=%s", key, a)
		hosts = append(hosts, h)
	}
	return hosts
}
