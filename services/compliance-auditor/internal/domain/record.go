// Package domain turns the events the compliance-auditor consumes into audit
// records. Hashing, checkpoints and verification live in libs/auditchain, shared
// with the offline verifier of chctl; this package decides what a record says.
package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cosmic-horizons/fleet/libs/auditchain"
	"github.com/cosmic-horizons/fleet/libs/events"
)

// ErrNotAudited is returned for an event the trail does not record (metrics,
// notifications, health).
var ErrNotAudited = errors.New("event is not audited")

// ResourceTypeJob is the resource type of records made from job-lifecycle events.
const ResourceTypeJob = "job"

// Details keys shared by every record. Payload attributes use their Avro field
// names; the attributes an audited action changed use "before.<name>" and
// "after.<name>".
const (
	DetailCorrelationID = "correlation_id"
	DetailCausationID   = "causation_id"
	DetailProducer      = "producer"
	DetailJobSequence   = "job_sequence"
	DetailOwner         = "owner"
)

// Audited reports whether events of eventType become audit records.
func Audited(eventType string) bool {
	switch eventType {
	case events.TypeAuditActionRecorded, events.TypeJobSubmitted, events.TypeJobQueued, events.TypeJobRunning,
		events.TypeJobCompleted, events.TypeJobFailed, events.TypeJobCancelled:
		return true
	}
	return false
}

// RecordFromEvent builds the (not yet chained) audit record of ev, recorded at
// recordedAt. An audit.action_recorded event becomes a record of its action
// ("<resource_type>.<action>" in lower case, for example "job.submit") by its
// actor on its resource; a job-lifecycle event becomes a record whose action is
// the event type (for example "job.completed"), whose resource is job/<job_id>
// and whose actor is the envelope's user. Details carry the envelope's
// correlation, causation and producer and the payload's attributes as strings.
// Events of other types give ErrNotAudited.
func RecordFromEvent(ev events.Event, recordedAt time.Time) (auditchain.Record, error) {
	if ev.Payload == nil {
		return auditchain.Record{}, errors.New("audit record: event has no payload")
	}
	if ev.EventID == "" {
		return auditchain.Record{}, errors.New("audit record: event_id is empty")
	}
	d := make(details, 16) // room for the attributes of every event type
	d.set(DetailCorrelationID, ev.CorrelationID)
	if ev.CausationID != nil {
		d.set(DetailCausationID, *ev.CausationID)
	}
	d.set(DetailProducer, ev.Producer)

	r := auditchain.Record{
		EventID:    ev.EventID,
		OccurredAt: ev.OccurredAt.UTC(),
		RecordedAt: recordedAt.UTC(),
		Actor:      ev.UserID,
	}
	lifecycle := true
	switch p := ev.Payload.(type) {
	case events.AuditActionRecorded:
		lifecycle = false
		r.Action = auditAction(p)
		if p.ActorUserID != "" {
			r.Actor = p.ActorUserID
		}
		r.ActorRole = p.ActorRole
		r.ResourceType = p.ResourceType
		r.ResourceID = p.ResourceID
		d.set("audit_id", p.AuditID)
		d.set("outcome", string(p.Outcome))
		if p.IPAddress != nil {
			d.set("ip_address", *p.IPAddress)
		}
		for k, v := range p.Before {
			d.set("before."+k, v)
		}
		for k, v := range p.After {
			d.set("after."+k, v)
		}
	case events.JobSubmitted:
		r.ResourceID = p.JobID
		d.set(DetailOwner, p.UserID)
		d.set("job_name", p.JobName)
		d.set("agent", p.Agent)
		d.set("dataset_id", p.DatasetID)
		d.set("tacc_system", string(p.TaccSystem))
		d.set("partition", p.Partition)
		d.set("priority", string(p.Priority))
		d.setInt("nodes", int64(p.ResourceRequest.Nodes))
		d.setInt("cores_per_node", int64(p.ResourceRequest.CoresPerNode))
		d.setInt("gpus_per_node", int64(p.ResourceRequest.GPUsPerNode))
		d.setInt("memory_mb", p.ResourceRequest.MemoryMB)
		d.setInt("walltime_seconds", p.ResourceRequest.WalltimeSeconds)
		d.setFloat("estimated_node_hours", p.EstimatedNodeHours)
		d.setFloat("estimated_gpu_hours", p.EstimatedGPUHours)
		d.setFloat("estimated_cost_usd", p.EstimatedCostUSD)
		if p.IdempotencyKey != nil {
			d.set("idempotency_key", *p.IdempotencyKey)
		}
		if p.FromStatus != nil {
			d.set("from_status", string(*p.FromStatus))
		}
		d.set("to_status", string(p.ToStatus))
	case events.JobQueued:
		r.ResourceID = p.JobID
		d.set(DetailOwner, p.UserID)
		d.set("scheduler", p.Scheduler)
		d.set("scheduler_job_id", p.SchedulerJobID)
		d.transition(p.FromStatus, p.ToStatus)
	case events.JobRunning:
		r.ResourceID = p.JobID
		d.set(DetailOwner, p.UserID)
		d.set("scheduler_job_id", p.SchedulerJobID)
		d.setNodeList(p.NodeList)
		if !p.StartedAt.IsZero() {
			d.set("started_at", p.StartedAt.UTC().Format(time.RFC3339Nano))
		}
		d.transition(p.FromStatus, p.ToStatus)
	case events.JobCompleted:
		r.ResourceID = p.JobID
		d.set(DetailOwner, p.UserID)
		d.setInt("exit_code", int64(p.ExitCode))
		d.setInt("run_time_ms", p.RunTimeMS)
		d.setInt("queue_wait_ms", p.QueueWaitMS)
		d.set("output_location", p.OutputLocation)
		d.transition(p.FromStatus, p.ToStatus)
	case events.JobFailed:
		r.ResourceID = p.JobID
		d.set(DetailOwner, p.UserID)
		d.set("error_code", p.ErrorCode)
		d.set("error_message", p.ErrorMessage)
		if p.ExitCode != nil {
			d.setInt("exit_code", int64(*p.ExitCode))
		}
		d.setInt("run_time_ms", p.RunTimeMS)
		d.transition(p.FromStatus, p.ToStatus)
	case events.JobCancelled:
		r.ResourceID = p.JobID
		d.set(DetailOwner, p.UserID)
		d.set("cancelled_by", p.CancelledBy)
		d.set("reason", p.Reason)
		d.transition(p.FromStatus, p.ToStatus)
	default:
		return auditchain.Record{}, fmt.Errorf("audit record of %s: %w", ev.EventType, ErrNotAudited)
	}
	if lifecycle {
		r.Action = ev.EventType
		r.ResourceType = ResourceTypeJob
		if ev.Sequence > 0 {
			d.setInt(DetailJobSequence, ev.Sequence)
		}
	}
	if len(d) > 0 {
		r.Details = d
	}
	if err := r.Validate(); err != nil {
		return auditchain.Record{}, fmt.Errorf("audit record of event %s: %w", ev.EventID, err)
	}
	return r, nil
}

// auditAction names an audited action "<resource_type>.<action>" in lower case,
// for example "job.submit"; just the action when the resource type is empty.
func auditAction(p events.AuditActionRecorded) string {
	action := strings.ToLower(string(p.Action))
	if action == "" {
		action = strings.ToLower(string(events.AuditActionUnknown))
	}
	if p.ResourceType == "" {
		return action
	}
	return strings.ToLower(p.ResourceType) + "." + action
}

// details collects the non-empty attributes of a record.
type details map[string]string

// Suffixes of the details a clipped value adds beside its prefix.
const (
	DetailSHA256Suffix = ".sha256"
	DetailBytesSuffix  = ".bytes"
)

// maxDetailValue is the longest details value kept whole: an event must
// never be refused because a value it carries is long (the event stays in
// Kafka; its record keeps a prefix, the value's length and its SHA-256).
const maxDetailValue = auditchain.MaxFieldBytes - 96

func (d details) set(k, v string) {
	if v == "" {
		return
	}
	if len(v) <= maxDetailValue {
		d[k] = v
		return
	}
	sum := sha256.Sum256([]byte(v))
	d[k+DetailSHA256Suffix] = hex.EncodeToString(sum[:])
	d[k+DetailBytesSuffix] = strconv.Itoa(len(v))
	cut := maxDetailValue
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	d[k] = v[:cut] + "…"
}

// setNodeList records a node list as the comma-separated names; a list too
// long for one value (a job on hundreds of nodes) is written in Slurm's
// compressed form and, if that is still too long, clipped by set; both
// add node_count.
func (d details) setNodeList(nodes []string) {
	joined := strings.Join(nodes, ",")
	if len(joined) <= maxDetailValue {
		d.set("node_list", joined)
		return
	}
	d.set("node_list", CompressHostList(nodes))
	d.setInt("node_count", int64(len(nodes)))
}

// CompressHostList writes a node list the way Slurm does ("c101-[001-003],
// gpu7"): runs of names that differ only in a numeric suffix of the same
// width, in order, become one bracketed range.
func CompressHostList(names []string) string {
	var b strings.Builder
	for i := 0; i < len(names); {
		prefix, num, width, ok := splitHost(names[i])
		j := i + 1
		if ok {
			for j < len(names) {
				p, n, w, ok2 := splitHost(names[j])
				if !ok2 || p != prefix || w != width || n != num+(j-i) {
					break
				}
				j++
			}
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j-i == 1 {
			b.WriteString(names[i])
		} else {
			fmt.Fprintf(&b, "%s[%0*d-%0*d]", prefix, width, num, width, num+(j-i-1))
		}
		i = j
	}
	return b.String()
}

// splitHost splits "c101-042" into "c101-", 42 and width 3.
func splitHost(name string) (prefix string, num, width int, ok bool) {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	if i == len(name) || len(name)-i > 9 {
		return "", 0, 0, false
	}
	n, err := strconv.Atoi(name[i:])
	if err != nil {
		return "", 0, 0, false
	}
	return name[:i], n, len(name) - i, true
}

func (d details) setInt(k string, v int64) { d[k] = strconv.FormatInt(v, 10) }

func (d details) setFloat(k string, v float64) { d[k] = strconv.FormatFloat(v, 'g', -1, 64) }

func (d details) transition(from, to events.JobStatus) {
	d.set("from_status", string(from))
	d.set("to_status", string(to))
}
