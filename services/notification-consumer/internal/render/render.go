// Package render turns a job lifecycle event into the subject and body of a
// notification (text/template) and into the JSON body of a webhook.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"
)

// Default templates. Data fields: JobID, JobName, UserID, EventType, Status,
// OccurredAt, RunTime, ErrorCode, ErrorMessage, Error, Reason.
const (
	DefaultSubjectTemplate = `[Fleet] Job {{.JobName}} {{.StatusWord}}`
	DefaultBodyTemplate    = `Your job {{.JobName}} ({{.JobID}}) is now {{.Status}}.

Event:    {{.EventType}} at {{.OccurredAt.Format "2006-01-02 15:04:05 MST"}}
{{- if .RunTime}}
Run time: {{.RunTime}}{{end}}
{{- if .Error}}
Error:    {{.Error}}{{end}}
{{- if .Reason}}
Reason:   {{.Reason}}{{end}}
`
)

// Limits that match the Notification message of the API.
const (
	MaxSubjectLen = 256
	MaxBodyLen    = 16384
)

// Data is what a template sees of one event.
type Data struct {
	EventID      string
	EventType    string
	JobID        string
	JobName      string
	UserID       string
	Status       string
	OccurredAt   time.Time
	RunTime      time.Duration
	ErrorCode    string
	ErrorMessage string
	Reason       string
}

// StatusWord is the status in lower case, for subjects ("completed").
func (d Data) StatusWord() string { return strings.ToLower(d.Status) }

// Error is the error code and message together, "" when there is none.
func (d Data) Error() string {
	switch {
	case d.ErrorCode != "" && d.ErrorMessage != "":
		return d.ErrorCode + ": " + d.ErrorMessage
	default:
		return d.ErrorCode + d.ErrorMessage
	}
}

// Renderer renders subjects and bodies from templates.
type Renderer struct {
	subject *template.Template
	body    *template.Template
}

// NewRenderer parses the subject and body templates; empty strings take the defaults.
func NewRenderer(subjectTmpl, bodyTmpl string) (*Renderer, error) {
	if subjectTmpl == "" {
		subjectTmpl = DefaultSubjectTemplate
	}
	if bodyTmpl == "" {
		bodyTmpl = DefaultBodyTemplate
	}
	s, err := template.New("subject").Option("missingkey=error").Parse(subjectTmpl)
	if err != nil {
		return nil, fmt.Errorf("parse subject template: %w", err)
	}
	b, err := template.New("body").Option("missingkey=error").Parse(bodyTmpl)
	if err != nil {
		return nil, fmt.Errorf("parse body template: %w", err)
	}
	return &Renderer{subject: s, body: b}, nil
}

// Render returns the subject (one line: CR and LF become spaces, at most
// MaxSubjectLen bytes) and the body (at most MaxBodyLen bytes).
func (r *Renderer) Render(d Data) (subject, body string, err error) {
	var sb, bb bytes.Buffer
	if err := r.subject.Execute(&sb, d); err != nil {
		return "", "", fmt.Errorf("render subject: %w", err)
	}
	if err := r.body.Execute(&bb, d); err != nil {
		return "", "", fmt.Errorf("render body: %w", err)
	}
	subject = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, sb.String())), " ")
	return truncateUTF8(subject, MaxSubjectLen), truncateUTF8(bb.String(), MaxBodyLen), nil
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// WebhookBody is the JSON a webhook receives.
type WebhookBody struct {
	DeliveryID   string    `json:"delivery_id"`
	EventID      string    `json:"event_id"`
	EventType    string    `json:"event_type"`
	JobID        string    `json:"job_id"`
	JobName      string    `json:"job_name"`
	UserID       string    `json:"user_id"`
	Status       string    `json:"status"`
	OccurredAt   time.Time `json:"occurred_at"`
	RunTimeMS    int64     `json:"run_time_ms,omitempty"`
	ErrorCode    string    `json:"error_code,omitempty"`
	ErrorMessage string    `json:"error_message,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	Subject      string    `json:"subject"`
}

// Webhook returns the JSON body of a webhook for d.
func Webhook(deliveryID, subject string, d Data) ([]byte, error) {
	b, err := json.Marshal(WebhookBody{
		DeliveryID: deliveryID, EventID: d.EventID, EventType: d.EventType, JobID: d.JobID,
		JobName: d.JobName, UserID: d.UserID, Status: d.Status, OccurredAt: d.OccurredAt.UTC(),
		RunTimeMS: d.RunTime.Milliseconds(), ErrorCode: d.ErrorCode, ErrorMessage: d.ErrorMessage,
		Reason: d.Reason, Subject: subject,
	})
	if err != nil {
		return nil, fmt.Errorf("marshal webhook body: %w", err)
	}
	return b, nil
}
