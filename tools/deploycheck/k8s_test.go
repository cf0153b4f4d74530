package deploycheck_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/cosmic-horizons/fleet/tools/deploycheck"
)

// secretEnv are variables whose values are credentials: they must come from
// a Secret, never from a ConfigMap or an inline value.
func secretEnv() []string {
	return []string{"AMQP_URL", "AUTH_HS256_SECRET", "PAGE_TOKEN_KEY", "SLURM_JWT_TOKEN", "SMTP_PASSWORD",
		"RABBITMQ_MGMT_URL", "DATABASE_URLS", "AUDIT_SIGNING_KEY"}
}

// stateful are the services with a database of their own (SQLite in dev,
// PostgreSQL through DATABASE_URL in prod).
func stateful() []string {
	return []string{"job-orchestrator", "metrics-consumer", "notification-consumer", "compliance-auditor"}
}

// consumers are the services scaled by an autoscaler.
func consumers() []string {
	return []string{"metrics-consumer", "notification-consumer", "compliance-auditor", "health-monitor"}
}

// authenticated are the services with a gRPC API behind JWT verification
// (libs/auth): each needs an HS256 secret or a JWKS to start.
func authenticated() []string {
	return []string{"job-orchestrator", "metrics-consumer", "notification-consumer", "compliance-auditor"}
}

// prodIssuer and prodAudience are what the production overlays expect of
// every token: the fleet's identity provider, and the fleet as audience.
const (
	prodIssuer   = "https://auth.fleet.tacc.utexas.edu"
	prodAudience = "cosmic-horizons-fleet"
)

// keySources are the variables of which an authenticated service needs one.
func keySources() []string {
	return []string{"AUTH_HS256_SECRET", "AUTH_HS256_SECRET_FILE", "AUTH_JWKS_FILE", "AUTH_JWKS_URL"}
}

// hasKeySource reports whether env names at least one key source.
func hasKeySource(env map[string]string) bool {
	return slices.ContainsFunc(keySources(), func(k string) bool { _, ok := env[k]; return ok })
}

// required are variables a service cannot start without, per service.
func required() map[string][]string {
	return map[string][]string{
		"job-orchestrator":      {"KAFKA_BROKERS", "AMQP_URL", "PAGE_TOKEN_KEY"},
		"metrics-consumer":      {"KAFKA_BROKERS"},
		"notification-consumer": {"KAFKA_BROKERS", "AMQP_URL", "SMTP_ADDR"},
		"compliance-auditor":    {"KAFKA_BROKERS", "AUDIT_SIGNING_KEY_FILE"},
		"health-monitor":        {"KAFKA_BROKERS", "AMQP_URL", "HEALTH_SERVICES"},
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := deploycheck.RepoRoot(".")
	require.NoError(t, err)
	return root
}

// fleet is one built overlay, its objects indexed by kind and name.
type fleet struct {
	namespace   string
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
}

func build(t *testing.T, dir string) fleet {
	t.Helper()
	objs, err := deploycheck.Build(dir)
	require.NoError(t, err)
	require.NotEmpty(t, objs)
	f := fleet{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
	}
	for _, o := range objs {
		require.NotEmpty(t, o.Namespace, "%s %s: overlays set the namespace", o.Kind, o.Name)
		if f.namespace == "" {
			f.namespace = o.Namespace
		}
		require.Equal(t, f.namespace, o.Namespace, "%s %s", o.Kind, o.Name)
		switch v := o.Value.(type) {
		case *appsv1.Deployment:
			f.deployments[o.Name] = v
		case *corev1.Service:
			f.services[o.Name] = v
		case *corev1.ConfigMap:
			f.configMaps[o.Name] = v
		case *policyv1.PodDisruptionBudget:
			f.pdbs[o.Name] = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			f.hpas[o.Name] = v
		default:
			t.Fatalf("%s %s: no Secret or other object belongs in the manifests (secrets are created by the operator)", o.Kind, o.Name)
		}
	}
	return f
}

func TestOverlaysBuildAndDecodeStrictly(t *testing.T) {
	root := repoRoot(t)
	type overlay struct {
		name     string
		dir      string
		env      string
		services []string
	}
	var overlays []overlay
	for _, env := range []string{"dev", "prod"} {
		for _, svc := range deploycheck.Services() {
			overlays = append(overlays, overlay{name: svc + "/" + env, env: env, services: []string{svc},
				dir: filepath.Join(root, "deploy", "k8s", svc, "overlays", env)})
		}
		overlays = append(overlays, overlay{name: "fleet/" + env, env: env, services: deploycheck.Services(),
			dir: filepath.Join(root, "deploy", "k8s", "overlays", env)})
	}
	codes := map[string]deploycheck.ServiceCode{}
	for _, svc := range deploycheck.Services() {
		code, err := deploycheck.ReadServiceCode(root, svc)
		require.NoError(t, err)
		codes[svc] = code
	}
	for _, tc := range overlays {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := build(t, tc.dir)
			require.Len(t, f.deployments, len(tc.services))
			for _, svc := range tc.services {
				t.Run(svc, func(t *testing.T) {
					checkService(t, f, codes[svc], tc.env)
				})
			}
		})
	}
}

func checkService(t *testing.T, f fleet, code deploycheck.ServiceCode, env string) {
	name := code.Name
	d := f.deployments[name]
	require.NotNil(t, d, "deployment %s", name)
	pod := d.Spec.Template.Spec
	require.Equal(t, d.Spec.Selector.MatchLabels, subset(d.Spec.Template.Labels, d.Spec.Selector.MatchLabels))

	// Security.
	require.NotNil(t, pod.SecurityContext)
	require.Equal(t, ptrTrue(), pod.SecurityContext.RunAsNonRoot)
	require.EqualValues(t, 65532, deref(pod.SecurityContext.RunAsUser))
	require.False(t, deref(pod.AutomountServiceAccountToken))
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	sc := c.SecurityContext
	require.NotNil(t, sc)
	require.Equal(t, ptrTrue(), sc.RunAsNonRoot)
	require.EqualValues(t, 65532, deref(sc.RunAsUser))
	require.True(t, deref(sc.ReadOnlyRootFilesystem))
	require.NotNil(t, sc.AllowPrivilegeEscalation)
	require.False(t, *sc.AllowPrivilegeEscalation)
	require.NotNil(t, sc.Capabilities)
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	require.Empty(t, sc.Capabilities.Add)
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		require.Contains(t, volumes, m.Name, "mount %s", m.MountPath)
		mounts[m.MountPath] = m
	}
	require.Contains(t, mounts, "/tmp")
	require.NotNil(t, volumes[mounts["/tmp"].Name].EmptyDir, "/tmp is an emptyDir")

	// Ports and probes agree with the code.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	require.Equal(t, map[string]int32{"grpc": int32(code.GRPCPort), "http": int32(code.HTTPPort)}, ports)
	for probeName, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		require.NotNil(t, p, "%s probe", probeName)
		require.NotNil(t, p.GRPC, "%s probe is a gRPC probe", probeName)
		require.EqualValues(t, code.GRPCPort, p.GRPC.Port, "%s probe port", probeName)
	}

	// Resources.
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
		require.False(t, req.IsZero(), "request %s", res)
		require.False(t, lim.IsZero(), "limit %s", res)
		require.LessOrEqual(t, req.Cmp(lim), 0, "request %s above its limit", res)
	}

	// Environment: every name is one the service reads; credentials come from Secrets.
	envValues := map[string]string{}
	fromSecret := map[string]bool{}
	var cm *corev1.ConfigMap
	for _, ef := range c.EnvFrom {
		require.NotNil(t, ef.ConfigMapRef, "envFrom only names ConfigMaps")
		cm = f.configMaps[ef.ConfigMapRef.Name]
		require.NotNil(t, cm, "configmap %s", ef.ConfigMapRef.Name)
		for k, v := range cm.Data {
			envValues[k] = v
		}
	}
	require.NotNil(t, cm, "the service's ConfigMap")
	for _, k := range secretEnv() {
		require.NotContains(t, cm.Data, k, "%s is a credential: a Secret, not a ConfigMap", k)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			require.NotEmpty(t, e.ValueFrom.SecretKeyRef.Name)
			require.NotEmpty(t, e.ValueFrom.SecretKeyRef.Key)
			fromSecret[e.Name] = true
		case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
		default:
			require.NotContains(t, secretEnv(), e.Name, "%s is a credential", e.Name)
		}
		envValues[e.Name] = e.Value
	}
	for k := range envValues {
		require.True(t, code.Reads(k), "%s sets %s, which the code does not read", name, k)
	}
	for _, k := range required()[name] {
		require.Contains(t, envValues, k, "%s needs %s", name, k)
	}
	require.Equal(t, fmt.Sprintf(":%d", code.GRPCPort), envValues["GRPC_ADDR"])
	require.Equal(t, fmt.Sprintf(":%d", code.HTTPPort), envValues["HTTP_ADDR"])
	require.NotContains(t, envValues, "AUTH_DISABLED", "authentication is never turned off in a cluster")
	if slices.Contains(authenticated(), name) {
		require.True(t, hasKeySource(envValues), "%s verifies JWTs and needs one of %v", name, keySources())
		if env == "prod" {
			_, file := envValues["AUTH_JWKS_FILE"]
			_, url := envValues["AUTH_JWKS_URL"]
			require.True(t, file || url, "prod verifies RS256 tokens against a JWKS")
			// A token of another issuer, or minted for another audience
			// trusted by the same keys, is refused.
			require.NotEmpty(t, envValues["AUTH_ISSUER"], "prod checks the issuer of tokens")
			require.NotEmpty(t, envValues["AUTH_AUDIENCE"], "prod checks the audience of tokens")
			require.Equal(t, envValues["AUTH_ISSUER"], prodIssuer, "one issuer for the fleet")
			require.Equal(t, envValues["AUTH_AUDIENCE"], prodAudience, "one audience for the fleet")
		}
	} else {
		require.False(t, hasKeySource(envValues), "%s has no authentication", name)
	}
	for k, v := range envValues {
		if strings.HasSuffix(k, "_FILE") || strings.HasSuffix(k, "_DIR") {
			require.True(t, mountedUnder(mounts, v), "%s=%s is not on a mounted volume", k, v)
		}
	}

	// Service, PDB, autoscaler.
	s := f.services[name]
	require.NotNil(t, s, "service %s", name)
	require.Equal(t, d.Spec.Selector.MatchLabels, s.Spec.Selector)
	sports := map[string]int32{}
	for _, p := range s.Spec.Ports {
		sports[p.Name] = p.Port
		require.Equal(t, p.Name, p.TargetPort.StrVal, "service port %s targets the container port by name", p.Name)
	}
	require.Equal(t, ports, sports)
	pdb := f.pdbs[name]
	require.NotNil(t, pdb, "pdb %s", name)
	require.Equal(t, d.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels)
	hpa := f.hpas[name]

	replicas := deref(d.Spec.Replicas)
	isStateful := slices.Contains(stateful(), name)
	switch env {
	case "dev":
		require.EqualValues(t, 1, replicas)
		require.Nil(t, hpa, "no autoscaler in dev")
		if isStateful {
			require.True(t, strings.HasPrefix(envValues["DATABASE_URL"], "sqlite:"), "dev uses SQLite")
			require.True(t, mountedUnder(mounts, strings.TrimPrefix(strings.TrimPrefix(envValues["DATABASE_URL"], "sqlite:"), "//")),
				"the SQLite file is on a writable volume")
		}
	case "prod":
		require.GreaterOrEqual(t, replicas, int32(2))
		require.NotEmpty(t, pod.TopologySpreadConstraints)
		require.NotEqual(t, "dev", strings.SplitN(c.Image, ":", 2)[1], "prod pins an image tag")
		if isStateful {
			require.True(t, fromSecret["DATABASE_URL"], "prod reads DATABASE_URL (PostgreSQL) from a Secret")
			require.NotContains(t, cm.Data, "DATABASE_URL")
		}
		if slices.Contains(consumers(), name) {
			require.NotNil(t, hpa, "autoscaler %s", name)
			require.Equal(t, "Deployment", hpa.Spec.ScaleTargetRef.Kind)
			require.Equal(t, name, hpa.Spec.ScaleTargetRef.Name)
			require.GreaterOrEqual(t, deref(hpa.Spec.MinReplicas), replicas)
			require.Greater(t, hpa.Spec.MaxReplicas, deref(hpa.Spec.MinReplicas))
			require.Len(t, hpa.Spec.Metrics, 1)
			require.Equal(t, corev1.ResourceCPU, hpa.Spec.Metrics[0].Resource.Name)
		} else {
			require.Nil(t, hpa)
		}
	}
}

func mountedUnder(mounts map[string]corev1.VolumeMount, path string) bool {
	for p := range mounts {
		if path == p || strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

func subset(m, keys map[string]string) map[string]string {
	out := map[string]string{}
	for k := range keys {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func ptrTrue() *bool { b := true; return &b }

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
