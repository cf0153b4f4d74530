package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBrokerPIDsFindsTheListeningProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pids, err := brokerPIDs(context.Background(), []string{ln.Addr().String(), ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || pids[0] != os.Getpid() {
		t.Fatalf("pids %v, want [%d]", pids, os.Getpid())
	}
	if _, err := brokerPIDs(context.Background(), []string{"192.0.2.1:9092"}); err == nil || !strings.Contains(err.Error(), "not on this machine") {
		t.Fatalf("a remote broker: err %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if _, err := brokerPIDs(context.Background(), []string{"127.0.0.1:" + strconv.Itoa(port)}); err == nil {
		t.Fatal("a port nobody listens on found a process")
	}
}

func TestPinApartSeparatesAndRestores(t *testing.T) {
	if runtime.NumCPU() < 2 {
		if _, err := pinApart(context.Background(), nil); err == nil {
			t.Fatal("pinning apart on one CPU did not fail")
		}
		return
	}
	broker := exec.Command("sleep", "60")
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = broker.Process.Kill(); _ = broker.Wait() }()
	before := affinity(t, os.Getpid())

	pin, err := pinApart(context.Background(), []int{broker.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	last := runtime.NumCPU() - 1
	if got := affinity(t, broker.Process.Pid); got.Count() != 1 || !got.IsSet(last) {
		t.Errorf("broker pinned to %v, want only CPU %d", got, last)
	}
	if got := affinity(t, os.Getpid()); got.IsSet(last) || got.Count() != last {
		t.Errorf("this process pinned to %v, want CPUs 0-%d", got, last-1)
	}
	name, args := pin.command("java", "-version")
	if name != "taskset" || strings.Join(args[:3], " ") != "-c "+pin.clientCPUs+" java" {
		t.Errorf("pinned command %s %v", name, args)
	}
	if err := pin.undo(); err != nil {
		t.Fatal(err)
	}
	if got := affinity(t, os.Getpid()); got != before {
		t.Errorf("this process restored to %v, want %v", got, before)
	}
	if got := affinity(t, broker.Process.Pid); got.Count() != runtime.NumCPU() {
		t.Errorf("broker restored to %v", got)
	}
}

func affinity(t *testing.T, pid int) unix.CPUSet {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &set); err != nil {
		t.Fatal(err)
	}
	return set
}
