//go:build chaos

package chaos_test

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pgBin is where the run finds PostgreSQL's server binaries
// (CHAOS_PG_BIN, default Debian's postgresql-15).
func pgBin() string {
	if d := os.Getenv("CHAOS_PG_BIN"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/15/bin"
}

// ownPostgres is a PostgreSQL cluster of the run's own (its own data
// directory and port, run as the postgres user), so that stopping it never
// touches the shared one.
type ownPostgres struct {
	dir, data, port, logPath string
}

// startPostgres initdbs and starts a cluster in dir with the databases
// names; it returns nil and the reason when this machine cannot.
func startPostgres(t *testing.T, dir string, names ...string) (*ownPostgres, string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin(), "pg_ctl")); err != nil {
		return nil, "no PostgreSQL server binaries in " + pgBin() + " (CHAOS_PG_BIN)"
	}
	if os.Geteuid() != 0 {
		return nil, "not root (the cluster runs as the postgres user)"
	}
	pg := &ownPostgres{dir: filepath.Join(dir, "postgres"), port: fmt.Sprint(freePort(t))}
	pg.data, pg.logPath = filepath.Join(pg.dir, "data"), filepath.Join(pg.dir, "server.log")
	if err := os.MkdirAll(pg.dir, 0o700); err != nil {
		return nil, err.Error()
	}
	if out, err := exec.Command("chown", "postgres:postgres", pg.dir).CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("chown %s: %v: %s", pg.dir, err, out)
	}
	if out, err := pg.as("initdb", "-D", pg.data, "-A", "trust", "-U", "fleet", "-E", "UTF8"); err != nil {
		return nil, fmt.Sprintf("initdb: %v: %s", err, out)
	}
	if err := pg.start(); err != nil {
		return nil, err.Error()
	}
	t.Cleanup(func() { _ = pg.stop() })
	for _, n := range names {
		if out, err := pg.as("createdb", "-h", "127.0.0.1", "-p", pg.port, "-U", "fleet", n); err != nil {
			return nil, fmt.Sprintf("createdb %s: %v: %s", n, err, out)
		}
	}
	return pg, ""
}

func (pg *ownPostgres) as(tool string, args ...string) ([]byte, error) {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(pgBin(), tool)}, args...)...)
	cmd.Dir = pg.dir
	return cmd.CombinedOutput()
}

func (pg *ownPostgres) url(db string) string {
	return fmt.Sprintf("postgres://fleet@127.0.0.1:%s/%s?sslmode=disable", pg.port, db)
}

func (pg *ownPostgres) start() error {
	out, err := pg.as("pg_ctl", "-D", pg.data, "-l", pg.logPath, "-w", "-t", "60",
		"-o", "-p "+pg.port+" -k "+pg.dir+" -c listen_addresses=127.0.0.1 -c max_connections=200", "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

// stop shuts the cluster down at once (mode immediate: no checkpoint, as a
// crash), so that clients see their connections drop.
func (pg *ownPostgres) stop() error {
	out, err := pg.as("pg_ctl", "-D", pg.data, "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// ownRabbit is a RabbitMQ node of the run's own (node name, AMQP and
// distribution ports, data directory; no plugins), never the shared one.
type ownRabbit struct {
	*proc
	port int
}

func (r *ownRabbit) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.port) }

// startRabbit starts the node in dir; nil and the reason when this machine
// cannot.
func startRabbit(t *testing.T, dir string) (*ownRabbit, string) {
	t.Helper()
	// The server script itself, run as the rabbitmq user: the wrapper in
	// /usr/sbin switches user through su, whose new session a SIGKILL of
	// the process group does not reach, so the node would outlive its kill.
	server := "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(server); err != nil {
		return nil, "no " + server
	}
	u, err := user.Lookup("rabbitmq")
	if err != nil {
		return nil, "no rabbitmq user: " + err.Error()
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	home := filepath.Join(dir, "rabbitmq")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err.Error()
	}
	plugins := filepath.Join(home, "enabled_plugins")
	if err := os.WriteFile(plugins, []byte("[].\n"), 0o644); err != nil {
		return nil, err.Error()
	}
	_ = exec.Command("chown", "-R", "rabbitmq:rabbitmq", home).Run()
	r := &ownRabbit{port: freePort(t)}
	addr := fmt.Sprintf("127.0.0.1:%d", r.port)
	r.proc = &proc{name: "rabbitmq", path: server, logPath: filepath.Join(home, "stdout.log"),
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		env: append(os.Environ(), "HOME="+u.HomeDir, "USER=rabbitmq", "LOGNAME=rabbitmq",
			"RABBITMQ_NODENAME=chaos-"+randomHex(4)+"@localhost",
			fmt.Sprintf("RABBITMQ_NODE_PORT=%d", r.port),
			"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
			fmt.Sprintf("RABBITMQ_DIST_PORT=%d", freePort(t)),
			"RABBITMQ_MNESIA_BASE="+filepath.Join(home, "mnesia"),
			"RABBITMQ_LOG_BASE="+filepath.Join(home, "log"),
			"RABBITMQ_PID_FILE="+filepath.Join(home, "pid"),
			"RABBITMQ_ENABLED_PLUGINS_FILE="+plugins,
			"RABBITMQ_CONFIG_FILE="+filepath.Join(home, "none")),
		ready: func() bool { return portOpen(addr) }}
	r.start(t)
	// The server script does not pass SIGTERM on to the Erlang VM: the
	// cleanup kills the whole process group, the VM with it.
	t.Cleanup(r.kill)
	deadline := time.Now().Add(2 * time.Minute)
	for !r.ready() {
		select {
		case <-r.exited:
			b, _ := os.ReadFile(r.logPath)
			return nil, "rabbitmq-server exited: " + lastLines(string(b), 5)
		default:
		}
		if time.Now().After(deadline) {
			return nil, "rabbitmq-server did not listen within 2m"
		}
		time.Sleep(200 * time.Millisecond)
	}
	return r, ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
