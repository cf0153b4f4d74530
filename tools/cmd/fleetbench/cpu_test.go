package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses, as the kernel prints it.
	line := "4242 (job (orch) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 30 7 5 20 0 9 0 100 2000000 500 18446744073709551615"
	own, reaped, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if own != 280*clockTick || reaped != 12*clockTick {
		t.Fatalf("own %v reaped %v, want %v and %v", own, reaped, 280*clockTick, 12*clockTick)
	}
	if _, _, err := parseProcStat("4242 (x) S 1 2"); err == nil {
		t.Fatal("a short line parsed")
	}
	if _, _, err := parseProcStat("no name here"); err == nil {
		t.Fatal("a line without a command name parsed")
	}
}

func TestParseMachineStat(t *testing.T) {
	busy, total, err := parseMachineStat("cpu  100 5 50 800 40 1 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	if err != nil {
		t.Fatal(err)
	}
	// idle (800) and iowait (40) are not busy.
	if busy != 158 || total != 998 {
		t.Fatalf("busy %d total %d", busy, total)
	}
	if _, _, err := parseMachineStat("intr 1 2 3\n"); err == nil {
		t.Fatal("a stat without a cpu line parsed")
	}
}

// The parsers must read this machine's own files: while the process spins
// for 200ms of CPU time by getrusage, /proc shows about as much.
func TestSampleCPUOfThisProcess(t *testing.T) {
	a, err := sampleCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	start := rusageCPU(t)
	for rusageCPU(t)-start < 200*time.Millisecond {
	}
	b, err := sampleCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	u := a.until(b)
	if u.own < 150*time.Millisecond || u.machineBusy <= 0 || u.machineBusy > 1 {
		t.Fatalf("use %+v after spinning 200ms of CPU", u)
	}
}

func rusageCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
