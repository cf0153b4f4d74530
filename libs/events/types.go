package events

import "time"

// Event type names, carried in the envelope's event_type and the
// event_type message header.
const (
	TypeJobSubmitted        = "job.submitted"
	TypeJobQueued           = "job.queued"
	TypeJobRunning          = "job.running"
	TypeJobCompleted        = "job.completed"
	TypeJobFailed           = "job.failed"
	TypeJobCancelled        = "job.cancelled"
	TypeJobMetricsRecorded  = "job.metrics_recorded"
	TypeNotificationSent    = "notification.sent"
	TypeNotificationFailed  = "notification.failed"
	TypeAuditActionRecorded = "audit.action_recorded"
	TypeSystemHealthCheck   = "system.health_check"
	TypeAlertRaised         = "alert.raised"
	TypeAlertResolved       = "alert.resolved"
)

// JobStatus is a state of the job state machine.
type JobStatus string

// The job states. COMPLETED, FAILED and CANCELLED are terminal.
const (
	JobStatusSubmitted JobStatus = "SUBMITTED"
	JobStatusQueued    JobStatus = "QUEUED"
	JobStatusRunning   JobStatus = "RUNNING"
	JobStatusCompleted JobStatus = "COMPLETED"
	JobStatusFailed    JobStatus = "FAILED"
	JobStatusCancelled JobStatus = "CANCELLED"
)

// Terminal reports whether no transition leaves s.
func (s JobStatus) Terminal() bool {
	return s == JobStatusCompleted || s == JobStatusFailed || s == JobStatusCancelled
}

// TaccSystem is a TACC HPC system. TaccSystemOther stands for any system the
// reader does not know.
type TaccSystem string

// The TACC systems.
const (
	TaccSystemOther     TaccSystem = "OTHER"
	TaccSystemFrontera  TaccSystem = "FRONTERA"
	TaccSystemStampede3 TaccSystem = "STAMPEDE3"
	TaccSystemLonestar6 TaccSystem = "LONESTAR6"
	TaccSystemVista     TaccSystem = "VISTA"
)

// JobPriority is the scheduling priority a user asks for.
type JobPriority string

// The job priorities.
const (
	JobPriorityLow    JobPriority = "LOW"
	JobPriorityNormal JobPriority = "NORMAL"
	JobPriorityHigh   JobPriority = "HIGH"
)

// NotificationChannel is how a notification is delivered.
type NotificationChannel string

// The notification channels. ChannelUnknown is what a reader sees for a
// channel added after it was built.
const (
	ChannelUnknown NotificationChannel = "UNKNOWN"
	ChannelEmail   NotificationChannel = "EMAIL"
	ChannelWebhook NotificationChannel = "WEBHOOK"
	ChannelInApp   NotificationChannel = "IN_APP"
)

// AuditAction is the kind of an audited action.
type AuditAction string

// The audited actions.
const (
	AuditActionUnknown          AuditAction = "UNKNOWN"
	AuditActionCreate           AuditAction = "CREATE"
	AuditActionRead             AuditAction = "READ"
	AuditActionUpdate           AuditAction = "UPDATE"
	AuditActionDelete           AuditAction = "DELETE"
	AuditActionExecute          AuditAction = "EXECUTE"
	AuditActionExport           AuditAction = "EXPORT"
	AuditActionAccess           AuditAction = "ACCESS"
	AuditActionPermissionChange AuditAction = "PERMISSION_CHANGE"
	AuditActionSubmit           AuditAction = "SUBMIT"
	AuditActionCancel           AuditAction = "CANCEL"
)

// AuditOutcome is the result of an audited action.
type AuditOutcome string

// The audit outcomes.
const (
	AuditOutcomeSuccess AuditOutcome = "SUCCESS"
	AuditOutcomeDenied  AuditOutcome = "DENIED"
	AuditOutcomeFailure AuditOutcome = "FAILURE"
)

// ComponentType is the kind of a component whose health is checked.
type ComponentType string

// The component kinds.
const (
	ComponentUnknown       ComponentType = "UNKNOWN"
	ComponentBroker        ComponentType = "BROKER"
	ComponentConsumerGroup ComponentType = "CONSUMER_GROUP"
	ComponentTopic         ComponentType = "TOPIC"
	ComponentProducer      ComponentType = "PRODUCER"
	ComponentAPIServer     ComponentType = "API_SERVER"
	ComponentService       ComponentType = "SERVICE"
	ComponentDatabase      ComponentType = "DATABASE"
	ComponentScheduler     ComponentType = "SCHEDULER"
)

// HealthStatus is the result of a health probe.
type HealthStatus string

// The health states.
const (
	HealthHealthy   HealthStatus = "HEALTHY"
	HealthDegraded  HealthStatus = "DEGRADED"
	HealthUnhealthy HealthStatus = "UNHEALTHY"
)

// AlertSeverity is the severity of an alert.
type AlertSeverity string

// The alert severities.
const (
	SeverityInfo     AlertSeverity = "INFO"
	SeverityWarning  AlertSeverity = "WARNING"
	SeverityCritical AlertSeverity = "CRITICAL"
)

// Envelope holds the fields every event carries. Tags avro:"..." name the
// schema fields.
type Envelope struct {
	EventID       string            `avro:"event_id"`       // UUID; the dedup key
	EventType     string            `avro:"event_type"`     // one of the Type* constants
	OccurredAt    time.Time         `avro:"occurred_at"`    // microsecond precision, UTC
	CorrelationID string            `avro:"correlation_id"` // shared by everything one request caused
	CausationID   *string           `avro:"causation_id"`   // event or command that caused this one; nil for a root event
	UserID        string            `avro:"user_id"`        // actor: user id or service principal
	Producer      string            `avro:"producer"`       // publishing service
	SchemaVersion int32             `avro:"schema_version"` // writer schema version; set by Codec.Encode
	Sequence      int64             `avro:"sequence"`       // per-job sequence on job topics, else 0
	Tags          map[string]string `avro:"tags"`
}

// ResourceRequest is what a job asks the scheduler for.
type ResourceRequest struct {
	Nodes           int32 `avro:"nodes"`
	CoresPerNode    int32 `avro:"cores_per_node"`
	GPUsPerNode     int32 `avro:"gpus_per_node"`
	MemoryMB        int64 `avro:"memory_mb"`
	WalltimeSeconds int64 `avro:"walltime_seconds"`
}

// JobSubmitted: a job was accepted and persisted. FromStatus is nil.
type JobSubmitted struct {
	JobID              string          `avro:"job_id"`
	UserID             string          `avro:"user_id"`
	JobName            string          `avro:"job_name"`
	Agent              string          `avro:"agent"`
	DatasetID          string          `avro:"dataset_id"`
	TaccSystem         TaccSystem      `avro:"tacc_system"`
	Partition          string          `avro:"partition"`
	ResourceRequest    ResourceRequest `avro:"resource_request"`
	EstimatedNodeHours float64         `avro:"estimated_node_hours"`
	EstimatedGPUHours  float64         `avro:"estimated_gpu_hours"`
	EstimatedCostUSD   float64         `avro:"estimated_cost_usd"`
	Priority           JobPriority     `avro:"priority"`
	IdempotencyKey     *string         `avro:"idempotency_key"`
	// ResubmittedFrom is the job this one was resubmitted from (schema
	// v2); nil for a job submitted anew and in events written with v1.
	ResubmittedFrom *string    `avro:"resubmitted_from"`
	FromStatus      *JobStatus `avro:"from_status"`
	ToStatus        JobStatus  `avro:"to_status"`
}

// JobQueued: the scheduler accepted the job.
type JobQueued struct {
	JobID          string    `avro:"job_id"`
	UserID         string    `avro:"user_id"`
	Scheduler      string    `avro:"scheduler"`
	SchedulerJobID string    `avro:"scheduler_job_id"`
	FromStatus     JobStatus `avro:"from_status"`
	ToStatus       JobStatus `avro:"to_status"`
}

// JobRunning: the job started on compute nodes.
type JobRunning struct {
	JobID          string    `avro:"job_id"`
	UserID         string    `avro:"user_id"`
	SchedulerJobID string    `avro:"scheduler_job_id"`
	NodeList       []string  `avro:"node_list"`
	StartedAt      time.Time `avro:"started_at"`
	FromStatus     JobStatus `avro:"from_status"`
	ToStatus       JobStatus `avro:"to_status"`
}

// JobCompleted: the job finished successfully.
type JobCompleted struct {
	JobID          string    `avro:"job_id"`
	UserID         string    `avro:"user_id"`
	ExitCode       int32     `avro:"exit_code"`
	RunTimeMS      int64     `avro:"run_time_ms"`
	QueueWaitMS    int64     `avro:"queue_wait_ms"`
	OutputLocation string    `avro:"output_location"`
	FromStatus     JobStatus `avro:"from_status"`
	ToStatus       JobStatus `avro:"to_status"`
}

// JobFailed: the job ended without success.
type JobFailed struct {
	JobID        string    `avro:"job_id"`
	UserID       string    `avro:"user_id"`
	ErrorCode    string    `avro:"error_code"`
	ErrorMessage string    `avro:"error_message"`
	ExitCode     *int32    `avro:"exit_code"`
	RunTimeMS    int64     `avro:"run_time_ms"`
	FromStatus   JobStatus `avro:"from_status"`
	ToStatus     JobStatus `avro:"to_status"`
}

// JobCancelled: the job was cancelled.
type JobCancelled struct {
	JobID       string    `avro:"job_id"`
	UserID      string    `avro:"user_id"`
	CancelledBy string    `avro:"cancelled_by"`
	Reason      string    `avro:"reason"`
	FromStatus  JobStatus `avro:"from_status"`
	ToStatus    JobStatus `avro:"to_status"`
}

// JobMetricsRecorded: a usage sample of a job; Final for the last one.
type JobMetricsRecorded struct {
	JobID       string     `avro:"job_id"`
	TaccSystem  TaccSystem `avro:"tacc_system"`
	UserID      string     `avro:"user_id"`
	Agent       string     `avro:"agent"`
	QueueWaitMS int64      `avro:"queue_wait_ms"`
	RunTimeMS   int64      `avro:"run_time_ms"`
	ExitCode    *int32     `avro:"exit_code"`
	NodeHours   float64    `avro:"node_hours"`
	GPUHours    float64    `avro:"gpu_hours"`
	CPUTimeMS   *int64     `avro:"cpu_time_ms"`
	MaxRSSBytes *int64     `avro:"max_rss_bytes"`
	// CPUEfficiencyPercent and MemoryEfficiencyPercent are seff's figures
	// (schema v2); nil when unknown and in events written with v1.
	CPUEfficiencyPercent    *float64 `avro:"cpu_efficiency_percent"`
	MemoryEfficiencyPercent *float64 `avro:"memory_efficiency_percent"`
	Final                   bool     `avro:"final"`
}

// NotificationSent: a notification was delivered.
type NotificationSent struct {
	NotificationID  string              `avro:"notification_id"`
	RecipientUserID string              `avro:"recipient_user_id"`
	Channel         NotificationChannel `avro:"channel"`
	Target          string              `avro:"target"`
	Subject         string              `avro:"subject"`
	RelatedJobID    *string             `avro:"related_job_id"`
	Attempt         int32               `avro:"attempt"`
}

// NotificationFailed: a delivery attempt failed; Permanent when not retried.
type NotificationFailed struct {
	NotificationID  string              `avro:"notification_id"`
	RecipientUserID string              `avro:"recipient_user_id"`
	Channel         NotificationChannel `avro:"channel"`
	Target          string              `avro:"target"`
	Subject         string              `avro:"subject"`
	RelatedJobID    *string             `avro:"related_job_id"`
	Attempt         int32               `avro:"attempt"`
	Error           string              `avro:"error"`
	Permanent       bool                `avro:"permanent"`
}

// AuditActionRecorded: an audited action on a resource. Before and After
// hold the changed attributes; nil when not applicable.
type AuditActionRecorded struct {
	AuditID      string            `avro:"audit_id"`
	Action       AuditAction       `avro:"action"`
	ActorUserID  string            `avro:"actor_user_id"`
	ActorRole    string            `avro:"actor_role"`
	ResourceType string            `avro:"resource_type"`
	ResourceID   string            `avro:"resource_id"`
	Before       map[string]string `avro:"before"`
	After        map[string]string `avro:"after"`
	IPAddress    *string           `avro:"ip_address"`
	Outcome      AuditOutcome      `avro:"outcome"`
}

// SystemHealthCheck: the result of one health probe.
type SystemHealthCheck struct {
	ComponentID   string             `avro:"component_id"`
	ComponentType ComponentType      `avro:"component_type"`
	Status        HealthStatus       `avro:"status"`
	Detail        string             `avro:"detail"`
	LatencyMS     *int64             `avro:"latency_ms"`
	Metrics       map[string]float64 `avro:"metrics"`
}

// AlertRaised: a component crossed an alerting threshold.
type AlertRaised struct {
	AlertID     string        `avro:"alert_id"`
	ComponentID string        `avro:"component_id"`
	Severity    AlertSeverity `avro:"severity"`
	Message     string        `avro:"message"`
}

// AlertResolved: a raised alert no longer applies.
type AlertResolved struct {
	AlertID     string `avro:"alert_id"`
	ComponentID string `avro:"component_id"`
	Message     string `avro:"message"`
}
