package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// The brokers of the local stack share this machine's cores with the
// benchmark. To tell the broker's latency from the contention between the
// two, the latency runs are repeated with the brokers pinned to the last
// CPU and the clients (this process and Kafka's ProducerPerformance) to
// the others.

// pinning is the placement of one pinned run.
type pinning struct {
	brokerCPU  int    // the CPU every broker process runs on
	clientCPUs string // the CPU list of the clients, in taskset's syntax
	brokerPIDs []int
	restore    []func() error // undoes each affinity change, newest last
}

var ssPID = regexp.MustCompile(`pid=(\d+)`)

// brokerPIDs returns the processes of this machine that listen on the
// brokers' ports; an error when a broker is not local or not found.
func brokerPIDs(ctx context.Context, brokers []string) ([]int, error) {
	var pids []int
	for _, b := range brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			return nil, fmt.Errorf("broker %q: %w", b, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("broker %s is not on this machine", b)
		}
		out, err := exec.CommandContext(ctx, "ss", "-Hltnp", "sport = :"+port).Output()
		if err != nil {
			return nil, fmt.Errorf("find the process listening on %s: ss: %w", b, err)
		}
		m := ssPID.FindSubmatch(out)
		if m == nil {
			return nil, fmt.Errorf("no process of this machine listens on %s", b)
		}
		pid, _ := strconv.Atoi(string(m[1]))
		if !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// pinApart moves every thread of the broker processes to the last CPU and
// every thread of this process to the others. undo restores the affinity
// each had before, also after a partial failure.
func pinApart(ctx context.Context, pids []int) (*pinning, error) {
	n := runtime.NumCPU()
	if n < 2 {
		return nil, errors.New("pinning apart needs at least 2 CPUs")
	}
	p := &pinning{brokerCPU: n - 1, clientCPUs: fmt.Sprintf("0-%d", n-2), brokerPIDs: pids}
	if n == 2 {
		p.clientCPUs = "0"
	}
	for _, pid := range pids {
		if err := p.setAffinity(ctx, pid, strconv.Itoa(p.brokerCPU)); err != nil {
			return nil, errors.Join(err, p.undo())
		}
	}
	if err := p.setAffinity(ctx, os.Getpid(), p.clientCPUs); err != nil {
		return nil, errors.Join(err, p.undo())
	}
	return p, nil
}

// setAffinity pins every thread of pid to cpus and records how to undo it.
func (p *pinning) setAffinity(ctx context.Context, pid int, cpus string) error {
	out, err := exec.CommandContext(ctx, "taskset", "-p", "-c", strconv.Itoa(pid)).Output()
	if err != nil {
		return fmt.Errorf("read the CPU affinity of process %d: taskset: %w", pid, err)
	}
	// "pid 123's current affinity list: 0,1"
	_, before, ok := strings.Cut(strings.TrimSpace(string(out)), ": ")
	if !ok {
		return fmt.Errorf("read the CPU affinity of process %d: unexpected taskset output %q", pid, out)
	}
	if out, err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		return fmt.Errorf("pin process %d to CPUs %s: taskset: %w: %s", pid, cpus, err, out)
	}
	p.restore = append(p.restore, func() error {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", before, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			return fmt.Errorf("restore the CPU affinity %s of process %d: taskset: %w: %s", before, pid, err, out)
		}
		return nil
	})
	return nil
}

// undo restores every affinity this pinning changed.
func (p *pinning) undo() error {
	var errs []error
	for i := len(p.restore) - 1; i >= 0; i-- {
		errs = append(errs, p.restore[i]())
	}
	p.restore = nil
	return errors.Join(errs...)
}

// command returns name and args prefixed so that the command runs on the
// clients' CPUs.
func (p *pinning) command(name string, args ...string) (string, []string) {
	if p == nil {
		return name, args
	}
	return "taskset", append([]string{"-c", p.clientCPUs, name}, args...)
}

// String describes the placement for the report.
func (p *pinning) String() string {
	return fmt.Sprintf("brokers (pid %s) on CPU %d, clients on CPU %s",
		strings.Trim(strings.Join(strings.Fields(fmt.Sprint(p.brokerPIDs)), ", "), "[]"), p.brokerCPU, p.clientCPUs)
}
