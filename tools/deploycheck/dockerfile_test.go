package deploycheck_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// stage is one FROM of a Dockerfile with its instructions, continuation
// lines joined.
type stage struct {
	from  string
	name  string
	lines []string
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var stages []stage
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		fields := strings.Fields(line)
		if strings.EqualFold(fields[0], "FROM") {
			s := stage{from: fields[1]}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				s.name = fields[3]
			}
			stages = append(stages, s)
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			continue
		}
		if more, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(more + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	require.NoError(t, sc.Err())
	flush()
	return stages
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	stages := parseDockerfile(t, filepath.Join(root, "deploy", "docker", "Dockerfile"))
	require.GreaterOrEqual(t, len(stages), 2, "multi-stage")

	build := stages[0]
	require.Equal(t, "golang:1.26", build.from)
	require.Equal(t, "build", build.name)
	body := strings.Join(build.lines, "\n")
	require.Contains(t, body, "ARG SERVICE")
	require.Contains(t, body, "CGO_ENABLED=0")
	require.Contains(t, body, "go build -trimpath")
	require.Contains(t, body, `"./services/${SERVICE}/cmd/${SERVICE}"`)
	for _, mod := range []string{"libs", "proto", "schemas", "tools", "services/job-orchestrator"} {
		require.Contains(t, body, "COPY "+mod+"/go.mod ", "the go.work modules are copied before the download")
	}

	final := stages[len(stages)-1]
	require.Equal(t, "gcr.io/distroless/static-debian12:nonroot", final.from, "the default target is distroless static")
	var user, entrypoint string
	for _, l := range final.lines {
		if v, ok := strings.CutPrefix(l, "USER "); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(l, "ENTRYPOINT "); ok {
			entrypoint = v
		}
		require.False(t, strings.HasPrefix(l, "RUN "), "the distroless stage has no shell to RUN with")
	}
	require.Equal(t, "nonroot:nonroot", user)
	require.Equal(t, `["/usr/local/bin/service"]`, entrypoint)

	// The ignore file sits next to the Dockerfile (BuildKit) and keeps the
	// sources the build needs.
	ignore, err := os.ReadFile(filepath.Join(root, "deploy", "docker", "Dockerfile.dockerignore"))
	require.NoError(t, err)
	for _, line := range strings.Split(string(ignore), "\n") {
		line = strings.TrimSpace(line)
		for _, needed := range []string{"libs", "proto", "schemas", "services", "go.work", "tools"} {
			require.NotEqual(t, needed, line, "%s is needed by the build", needed)
		}
	}
}
