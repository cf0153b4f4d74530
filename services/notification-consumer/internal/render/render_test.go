package render_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/services/notification-consumer/internal/render"
)

func TestRender(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		subjectTmpl string
		data        render.Data
		wantSubject string
		bodyHas     []string
	}{
		{name: "completed", data: render.Data{JobID: "j1", JobName: "calib", Status: "COMPLETED", EventType: "job.completed", OccurredAt: at, RunTime: 90 * time.Second},
			wantSubject: "[Fleet] Job calib completed", bodyHas: []string{"calib (j1) is now COMPLETED", "Run time: 1m30s", "2026-11-29 07:00:00 UTC"}},
		{name: "failed with error", data: render.Data{JobID: "j2", JobName: "img", Status: "FAILED", EventType: "job.failed", OccurredAt: at, ErrorCode: "OUT_OF_MEMORY", ErrorMessage: "oom"},
			wantSubject: "[Fleet] Job img failed", bodyHas: []string{"Error:    OUT_OF_MEMORY: oom"}},
		{name: "a job name cannot inject headers", data: render.Data{JobID: "j3", JobName: "x\r\nBcc: victim@example.org", Status: "CANCELLED", OccurredAt: at},
			wantSubject: "[Fleet] Job x Bcc: victim@example.org cancelled"},
		{name: "subject is truncated", subjectTmpl: `{{.JobName}}`, data: render.Data{JobName: strings.Repeat("é", 200), OccurredAt: at},
			wantSubject: strings.Repeat("é", 128)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := render.NewRenderer(tt.subjectTmpl, "")
			require.NoError(t, err)
			subject, body, err := r.Render(tt.data)
			require.NoError(t, err)
			require.Equal(t, tt.wantSubject, subject)
			require.NotContains(t, subject, "\n")
			for _, want := range tt.bodyHas {
				require.Contains(t, body, want)
			}
		})
	}
	_, err := render.NewRenderer("{{.Nope", "")
	require.Error(t, err)
}

func TestWebhookBody(t *testing.T) {
	t.Parallel()
	b, err := render.Webhook("d1", "subj", render.Data{EventID: "e1", EventType: "job.completed", JobID: "j1", Status: "COMPLETED", RunTime: time.Second})
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	require.Equal(t, "d1", m["delivery_id"])
	require.EqualValues(t, 1000, m["run_time_ms"])
	require.NotContains(t, m, "error_code")
}
