package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
)

// benchSecret signs the benchmark's tokens; the orchestrator it starts
// verifies them (HS256), as a production server verifies every call's JWT.
const benchSecret = "fleetbench-hs256-secret-0123456789abcdef"

// orchestratorPackage is built when no binary is given (run from the
// repository root, as `make bench` does).
const orchestratorPackage = "./services/job-orchestrator/cmd/job-orchestrator"

// orchestrator is a job-orchestrator process started for one measurement,
// with a state directory and database of its own.
type orchestrator struct {
	addr    string
	dir     string
	dbURL   string
	cmd     *exec.Cmd
	logPath string
	cleanup []func()

	// httpAddr serves its /metrics and health endpoints.
	httpAddr string
}

// supervisorPackage is each local job's supervisor, built next to the
// orchestrator, where the orchestrator finds it.
const supervisorPackage = "./services/job-orchestrator/cmd/job-supervisor"

// buildOrchestrator builds the orchestrator binary and the job supervisor
// into dir, unless bin is already given (a job-supervisor next to bin is
// used; without one the orchestrator starts itself as each supervisor).
func buildOrchestrator(ctx context.Context, bin, dir string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	out := filepath.Join(dir, "job-orchestrator")
	for pkg, o := range map[string]string{orchestratorPackage: out, supervisorPackage: filepath.Join(dir, "job-supervisor")} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", o, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("build %s (run from the repository root, or pass -orchestrator): %w", pkg, err)
		}
	}
	return out, nil
}

// freshDatabase returns the URL of a new, empty database of dialect db
// ("sqlite" or "postgres") and a function that removes it.
func freshDatabase(ctx context.Context, db, dir string) (string, func(), error) {
	switch db {
	case "sqlite":
		return "sqlite://" + filepath.Join(dir, "orchestrator.db"), func() {}, nil
	case "postgres":
		server := os.Getenv("DATABASE_URL_POSTGRES")
		if server == "" {
			return "", nil, errors.New(`DATABASE_URL_POSTGRES is not set: eval "$(tools/stack/stack.sh env)"`)
		}
		admin, err := sqlstore.Open(ctx, sqlstore.Config{URL: server, MaxOpenConns: 1}, nil)
		if err != nil {
			return "", nil, err
		}
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		name := "fleetbench_" + hex.EncodeToString(b)
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			admin.Close()
			return "", nil, fmt.Errorf("create database %s: %w", name, err)
		}
		u, err := url.Parse(server)
		if err != nil {
			admin.Close()
			return "", nil, err
		}
		u.Path = "/" + name
		drop := func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := admin.ExecContext(dctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
				fmt.Fprintf(os.Stderr, "fleetbench: drop database %s: %v\n", name, err)
			}
			admin.Close()
		}
		return u.String(), drop, nil
	}
	return "", nil, fmt.Errorf("unknown database %q (want sqlite or postgres)", db)
}

// startOrchestrator runs bin on a free port with the local backend (jobs
// run as the bench's own user), JWT authentication, the stack's Kafka and
// RabbitMQ under topic prefix "fleetbench-", and the database db. It
// returns once grpc.health.v1 answers SERVING.
func startOrchestrator(ctx context.Context, bin, db string, extraEnv map[string]string, logger *slog.Logger) (*orchestrator, error) {
	dir, err := os.MkdirTemp("", "fleetbench-orchestrator-")
	if err != nil {
		return nil, err
	}
	o := &orchestrator{dir: dir, logPath: filepath.Join(dir, "orchestrator.log")}
	o.cleanup = append(o.cleanup, func() { _ = os.RemoveAll(dir) })
	dbURL, drop, err := freshDatabase(ctx, db, dir)
	if err != nil {
		o.stop()
		return nil, err
	}
	o.cleanup = append(o.cleanup, drop)
	o.dbURL = dbURL
	addr, err := freePort()
	if err != nil {
		o.stop()
		return nil, err
	}
	httpAddr, err := freePort()
	if err != nil {
		o.stop()
		return nil, err
	}
	o.addr, o.httpAddr = addr, httpAddr
	env := map[string]string{
		"GRPC_ADDR":                  addr,
		"HTTP_ADDR":                  httpAddr,
		"STATE_DIRECTORY":            filepath.Join(dir, "state"),
		"DATABASE_URL":               dbURL,
		"SCHEDULER":                  "local",
		"LOCAL_SINGLE_USER":          "true",
		"AUTH_HS256_SECRET":          benchSecret,
		"PAGE_TOKEN_KEY":             "fleetbench-page-token-key-0123456789",
		"KAFKA_BROKERS":              os.Getenv("KAFKA_BROKERS"),
		"AMQP_URL":                   os.Getenv("AMQP_URL"),
		"ORCHESTRATOR_TOPIC_PREFIX":  "fleetbench-",
		"ORCHESTRATOR_ENSURE_TOPICS": "true",
		"OTEL_SDK_DISABLED":          "true",
	}
	for k, v := range extraEnv {
		env[k] = v
	}
	logFile, err := os.Create(o.logPath)
	if err != nil {
		o.stop()
		return nil, err
	}
	o.cleanup = append(o.cleanup, func() { logFile.Close() })
	o.cmd = exec.Command(bin)
	o.cmd.Env = os.Environ()
	for k, v := range env {
		o.cmd.Env = append(o.cmd.Env, k+"="+v)
	}
	o.cmd.Stdout, o.cmd.Stderr = logFile, logFile
	o.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := o.cmd.Start(); err != nil {
		o.stop()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- o.cmd.Wait() }()
	o.cleanup = append(o.cleanup, func() {
		_ = o.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-o.cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		o.stop()
		return nil, err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(90 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		select {
		case err := <-exited:
			exited <- err // for stop, which waits for it too
			log := tail(o.logPath)
			o.stop()
			return nil, fmt.Errorf("orchestrator exited before serving (%v); log: %s", err, log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log := tail(o.logPath)
			o.stop()
			return nil, fmt.Errorf("orchestrator not serving after 90 s; log: %s", log)
		}
	}
	logger.Info("orchestrator serving", "addr", addr, "database", db)
	return o, nil
}

// stop ends the process (SIGTERM, then SIGKILL) and removes its database
// and directory.
func (o *orchestrator) stop() {
	for i := len(o.cleanup) - 1; i >= 0; i-- {
		o.cleanup[i]()
	}
	o.cleanup = nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// tail returns the last lines of the file at path, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "fleetbench-") }

func removeAll(dir string) { _ = os.RemoveAll(dir) }

// loadAverage is the machine's 1, 5 and 15 minute load averages, which say
// how much of it the measurement had.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
