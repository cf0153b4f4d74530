// Package deploycheck builds the fleet's deployment descriptions the way the
// tools that apply them do, and reads from the services' source what those
// descriptions must agree with: the environment variables each service reads
// and the ports it listens on. Its tests hold deploy/k8s, deploy/docker and
// compose/compose.yaml to the code.
package deploycheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Services returns the names of the fleet's services, each a module under
// services/, in the order of their ports (gRPC 50051..50055).
func Services() []string {
	return []string{"job-orchestrator", "metrics-consumer", "notification-consumer", "compliance-auditor", "health-monitor"}
}

// Object is one Kubernetes object yielded by a kustomization, decoded into
// its API type (a pointer such as *appsv1.Deployment).
type Object struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Value      any
}

// newObject returns a zero value of the API type of apiVersion and kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	}
	return nil, fmt.Errorf("no API type known for apiVersion %q kind %q", apiVersion, kind)
}

// Decode decodes one YAML or JSON document strictly into its Kubernetes API
// type: a field the type does not have, or a field given twice, is an error.
func Decode(doc []byte) (Object, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return Object{}, fmt.Errorf("decode object header: %w", err)
	}
	v, err := newObject(meta.APIVersion, meta.Kind)
	if err != nil {
		return Object{}, fmt.Errorf("object %s: %w", meta.Metadata.Name, err)
	}
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return Object{}, fmt.Errorf("decode %s %s strictly: %w", meta.Kind, meta.Metadata.Name, err)
	}
	return Object{
		APIVersion: meta.APIVersion, Kind: meta.Kind,
		Name: meta.Metadata.Name, Namespace: meta.Metadata.Namespace, Value: v,
	}, nil
}

// Build runs kustomize on the kustomization in dir, as `kustomize build dir`
// does, and decodes every object it yields with Decode.
func Build(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []Object
	for _, r := range m.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %s: %w", dir, r.CurId(), err)
		}
		o, err := Decode(doc)
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
		}
		out = append(out, o)
	}
	return out, nil
}

// RepoRoot walks up from dir to the directory holding go.work.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("repo root: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repo root: no go.work above the working directory")
		}
		dir = parent
	}
}
