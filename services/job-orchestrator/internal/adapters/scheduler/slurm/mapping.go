package slurm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
)

// jobInfo is the part of a slurmrestd job record the backend reads. Fields
// that changed shape between API versions are kept raw.
type jobInfo struct {
	JobID            int64           `json:"job_id"`
	Name             string          `json:"name"`
	JobState         json.RawMessage `json:"job_state"` // "RUNNING" (v0.0.38) or ["RUNNING", ...]
	StateReason      string          `json:"state_reason"`
	StateDescription string          `json:"state_description"`
	ExitCode         json.RawMessage `json:"exit_code"` // wait status int, or an object
	SubmitTime       json.RawMessage `json:"submit_time"`
	StartTime        json.RawMessage `json:"start_time"`
	EndTime          json.RawMessage `json:"end_time"`
	Nodes            string          `json:"nodes"`
}

// ExitInfo is a decoded exit_code.
type ExitInfo struct {
	Known  bool
	Code   int32 // the exit status, or 128+signal when killed by a signal
	Signal int   // 0 unless killed by a signal
}

// ParseExitCode decodes exit_code: v0.0.38 gives the raw wait status as an
// integer (exit status in bits 8-15, terminating signal in bits 0-6); later
// versions give {"status": ..., "return_code": N, "signal": {"id"|"signal_id": N}},
// where numbers may be wrapped as {"set": true, "number": N}.
func ParseExitCode(raw json.RawMessage) (ExitInfo, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ExitInfo{}, nil
	}
	if n, ok, err := parseNumber(raw); err == nil && ok {
		return exitFromWaitStatus(n), nil
	} else if err == nil && !ok && raw[0] != '{' {
		return ExitInfo{}, nil
	}
	var obj struct {
		Status     json.RawMessage `json:"status"`
		ReturnCode json.RawMessage `json:"return_code"`
		Signal     struct {
			ID       json.RawMessage `json:"id"`
			SignalID json.RawMessage `json:"signal_id"`
		} `json:"signal"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return ExitInfo{}, fmt.Errorf("decode exit_code %s: %w", raw, err)
	}
	var info ExitInfo
	if sig, ok, _ := parseNumber(firstNonEmpty(obj.Signal.ID, obj.Signal.SignalID)); ok && sig > 0 {
		info = ExitInfo{Known: true, Code: int32(128 + sig), Signal: int(sig)}
	} else if rc, ok, _ := parseNumber(obj.ReturnCode); ok {
		info = ExitInfo{Known: true, Code: int32(rc)}
	}
	if st := statusStrings(obj.Status); slices.Contains(st, "PENDING") || slices.Contains(st, "INVALID") {
		return ExitInfo{}, nil
	}
	return info, nil
}

func exitFromWaitStatus(ws int64) ExitInfo {
	if sig := ws & 0x7f; sig != 0 && sig != 0x7f {
		return ExitInfo{Known: true, Code: int32(128 + sig), Signal: int(sig)}
	}
	return ExitInfo{Known: true, Code: int32((ws >> 8) & 0xff)}
}

func firstNonEmpty(a, b json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(a)) > 0 {
		return a
	}
	return b
}

// parseNumber reads an integer given plainly or as {"set": bool,
// "infinite": bool, "number": N}. ok is false for null, unset or infinite.
func parseNumber(raw json.RawMessage) (n int64, ok bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, false, nil
	}
	switch raw[0] {
	case '{':
		var w struct {
			Set      *bool           `json:"set"`
			Infinite bool            `json:"infinite"`
			Number   json.RawMessage `json:"number"`
		}
		if err := json.Unmarshal(raw, &w); err != nil {
			return 0, false, fmt.Errorf("decode number %s: %w", raw, err)
		}
		if (w.Set != nil && !*w.Set) || w.Infinite {
			return 0, false, nil
		}
		return parseNumber(w.Number)
	case '"':
		return 0, false, fmt.Errorf("number expected, got %s", raw)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, false, fmt.Errorf("decode number %s: %w", raw, err)
	}
	return int64(f), true, nil
}

func parseUnixTime(raw json.RawMessage) (time.Time, error) {
	n, ok, err := parseNumber(raw)
	if err != nil || !ok || n <= 0 {
		return time.Time{}, err
	}
	return time.Unix(n, 0).UTC(), nil
}

func statusStrings(raw json.RawMessage) []string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err == nil {
		return many
	}
	return nil
}

// Mapping is the fleet's view of one Slurm job state.
type Mapping struct {
	Phase     app.Phase
	ErrorCode string // set for PhaseFailed
}

// MapState maps a Slurm job_state onto a phase. exit is consulted for
// COMPLETED only. ok is false for a state the backend does not know.
//
//	PENDING, CONFIGURING, REQUEUED, REQUEUE_FED, REQUEUE_HOLD, RESV_DEL_HOLD,
//	SPECIAL_EXIT, SUSPENDED                 → queued (not terminal)
//	RUNNING, COMPLETING, STOPPED, SIGNALING, STAGE_OUT, RESIZING
//	                                        → running (not terminal)
//	COMPLETED                               → completed (exit 0), else failed NON_ZERO_EXIT
//	FAILED                                  → failed NON_ZERO_EXIT
//	TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, BOOT_FAIL, DEADLINE
//	                                        → failed with the same-named code
//	PREEMPTED                               → failed PREEMPTED
//	CANCELLED                               → cancelled
func MapState(state string, exit ExitInfo) (Mapping, bool) {
	switch state {
	case "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD",
		"SPECIAL_EXIT", "SUSPENDED":
		return Mapping{Phase: app.PhaseQueued}, true
	case "RUNNING", "COMPLETING", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING":
		return Mapping{Phase: app.PhaseRunning}, true
	case "COMPLETED":
		if exit.Known && exit.Code != 0 {
			return Mapping{Phase: app.PhaseFailed, ErrorCode: app.ErrorCodeNonZeroExit}, true
		}
		return Mapping{Phase: app.PhaseCompleted}, true
	case "FAILED":
		return Mapping{Phase: app.PhaseFailed, ErrorCode: app.ErrorCodeNonZeroExit}, true
	case "TIMEOUT":
		return Mapping{Phase: app.PhaseFailed, ErrorCode: app.ErrorCodeTimeout}, true
	case "OUT_OF_MEMORY":
		return Mapping{Phase: app.PhaseFailed, ErrorCode: app.ErrorCodeOutOfMemory}, true
	case "NODE_FAIL":
		return Mapping{Phase: app.PhaseFailed, ErrorCode: app.ErrorCodeNodeFail}, true
	case "BOOT_FAIL":
		return Mapping{Phase: app.PhaseFailed, ErrorCode: app.ErrorCodeBootFail}, true
	case "DEADLINE":
		return Mapping{Phase: app.PhaseFailed, ErrorCode: app.ErrorCodeDeadline}, true
	case "PREEMPTED":
		return Mapping{Phase: app.PhaseFailed, ErrorCode: app.ErrorCodePreempted}, true
	case "CANCELLED":
		return Mapping{Phase: app.PhaseCancelled}, true
	}
	return Mapping{}, false
}

// jobState picks the state to map from job_state: the base state, except
// that the COMPLETING and CONFIGURING flags of newer versions win, because
// they are not terminal.
func jobState(raw json.RawMessage) (string, error) {
	states := statusStrings(raw)
	if len(states) == 0 {
		return "", fmt.Errorf("job_state %s is not a string or a list of strings", raw)
	}
	for _, flag := range []string{"COMPLETING", "CONFIGURING"} {
		if slices.Contains(states, flag) {
			return flag, nil
		}
	}
	return states[0], nil
}

// toStatus converts a job record into the port's status.
func toStatus(j jobInfo) (app.SchedulerStatus, error) {
	state, err := jobState(j.JobState)
	if err != nil {
		return app.SchedulerStatus{}, err
	}
	exit, err := ParseExitCode(j.ExitCode)
	if err != nil {
		return app.SchedulerStatus{}, err
	}
	m, ok := MapState(state, exit)
	if !ok {
		return app.SchedulerStatus{}, fmt.Errorf("unrecognised slurm job_state %q", state)
	}
	st := app.SchedulerStatus{
		Phase:     m.Phase,
		State:     state,
		Reason:    j.StateReason,
		ErrorCode: m.ErrorCode,
		NodeList:  ExpandHostList(j.Nodes),
	}
	if st.Reason == "None" {
		st.Reason = ""
	}
	st.Code = state
	if r := strings.TrimSpace(st.Reason); r != "" {
		st.Code = r
	}
	if j.StateDescription != "" {
		st.Reason = strings.TrimSpace(st.Reason + " " + j.StateDescription)
	}
	if m.Phase.Terminal() && exit.Known {
		code := exit.Code
		st.ExitCode = &code
		if exit.Signal != 0 {
			st.Reason = strings.TrimSpace(st.Reason + fmt.Sprintf(" (signal %d)", exit.Signal))
		}
	}
	if advice := Advice(state, strings.TrimSpace(j.StateReason)); advice != "" && (m.Phase == app.PhaseFailed || m.Phase == app.PhaseQueued) {
		if st.Reason != "" {
			st.Reason += ": "
		}
		st.Reason += advice
	}
	if st.SubmitTime, err = parseUnixTime(j.SubmitTime); err != nil {
		return app.SchedulerStatus{}, fmt.Errorf("submit_time: %w", err)
	}
	if st.StartTime, err = parseUnixTime(j.StartTime); err != nil {
		return app.SchedulerStatus{}, fmt.Errorf("start_time: %w", err)
	}
	if st.EndTime, err = parseUnixTime(j.EndTime); err != nil {
		return app.SchedulerStatus{}, fmt.Errorf("end_time: %w", err)
	}
	if !m.Phase.Terminal() {
		// Slurm fills end_time of pending and running jobs with the expected end.
		st.EndTime = time.Time{}
	}
	if m.Phase == app.PhaseQueued {
		// and start_time of pending jobs with the expected start.
		st.StartTime = time.Time{}
	}
	return st, nil
}

// ExpandHostList expands a Slurm host list such as "vm", "n[1-3,7],gpu01"
// into host names. A part it cannot expand is returned as given.
func ExpandHostList(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" || s == "(null)" {
		return nil
	}
	var out []string
	for _, part := range splitTopLevel(s) {
		open := strings.IndexByte(part, '[')
		if open < 0 || !strings.HasSuffix(part, "]") {
			out = append(out, part)
			continue
		}
		prefix, ranges := part[:open], part[open+1:len(part)-1]
		expanded, ok := expandRanges(prefix, ranges)
		if !ok {
			out = append(out, part)
			continue
		}
		out = append(out, expanded...)
	}
	return out
}

func splitTopLevel(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func expandRanges(prefix, ranges string) ([]string, bool) {
	var out []string
	for _, r := range strings.Split(ranges, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || b < a || b-a > 100000 {
			return nil, false
		}
		for n := a; n <= b; n++ {
			out = append(out, fmt.Sprintf("%s%0*d", prefix, len(lo), n))
		}
	}
	return out, true
}
