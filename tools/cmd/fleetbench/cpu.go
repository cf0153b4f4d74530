package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU accounting of a measurement, from /proc. On a machine shared with
// other work, calls per second say how much CPU the server got as much as
// how much it needs; CPU time per call says the second alone, and the
// machine's busy share says how much there was to get.

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on every Linux
// architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuSample is one reading of a process and of the machine.
type cpuSample struct {
	at time.Time
	// own is the process's user and system time; reaped is the same of its
	// children that ended and were waited for (a local job's supervisor
	// and script).
	own, reaped time.Duration
	// busy and total are the machine's non-idle and total CPU time over
	// all CPUs, in ticks.
	busy, total uint64
}

// cpuUse is the difference of two samples.
type cpuUse struct {
	wall, own, reaped time.Duration
	// machineBusy is the fraction of all CPUs' time that was not idle.
	machineBusy float64
}

// sampleCPU reads process pid and the machine.
func sampleCPU(pid int) (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	if s.own, s.reaped, err = parseProcStat(string(b)); err != nil {
		return s, err
	}
	b, err = os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	s.busy, s.total, err = parseMachineStat(string(b))
	return s, err
}

// parseProcStat reads utime, stime, cutime and cstime from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from its closing parenthesis.
func parseProcStat(line string) (own, reaped time.Duration, err error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, errors.New("proc stat: no command name")
	}
	// After ")": state is field 3, utime field 14 … cstime field 17.
	f := strings.Fields(line[i+1:])
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("proc stat: %d fields after the command name", len(f))
	}
	var t [4]uint64
	for k := range t {
		if t[k], err = strconv.ParseUint(f[11+k], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("proc stat field %d: %w", 14+k, err)
		}
	}
	return time.Duration(t[0]+t[1]) * clockTick, time.Duration(t[2]+t[3]) * clockTick, nil
}

// parseMachineStat reads the "cpu" line of /proc/stat: busy is every
// column but idle and iowait.
func parseMachineStat(stat string) (busy, total uint64, err error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	for k, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat column %d: %w", k+1, err)
		}
		total += n
		if k != 3 && k != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

func (a cpuSample) until(b cpuSample) cpuUse {
	u := cpuUse{wall: b.at.Sub(a.at), own: b.own - a.own, reaped: b.reaped - a.reaped}
	if b.total > a.total {
		u.machineBusy = float64(b.busy-a.busy) / float64(b.total-a.total)
	}
	return u
}

// perCall is CPU time per call in milliseconds.
func perCall(d time.Duration, calls int) float64 {
	if calls == 0 {
		return 0
	}
	return float64(d) / float64(time.Millisecond) / float64(calls)
}

// cores is how many CPUs' worth of time d is over the wall time.
func (u cpuUse) cores(d time.Duration) float64 {
	if u.wall <= 0 {
		return 0
	}
	return float64(d) / float64(u.wall)
}
