package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// BenchmarkGroupCommitCreates writes batches of 50 Creates (a job with a
// tag, its job.submitted and audit events) the way the committer does,
// one transaction per batch, on one goroutine: ns/job is the database
// side of one SubmitJob in a full batch, free of the scheduling noise of
// concurrent callers. The requests are built before the clock runs.
func BenchmarkGroupCommitCreates(b *testing.B) {
	const perBatch = 50
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			ctx := context.Background()
			db := d.Open(b)
			if err := Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			codec, err := events.NewCodec()
			if err != nil {
				b.Fatal(err)
			}
			s, err := New(db, codec, Config{})
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			batch := func() []*groupReq {
				reqs := make([]*groupReq, perBatch)
				for i := range reqs {
					n++
					reqs[i] = benchCreateReq(b, s, n)
				}
				return reqs
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				reqs := batch()
				b.StartTimer()
				s.commitBatch(reqs)
				for _, r := range reqs {
					if err := <-r.done; err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perBatch), "ns/job")
		})
	}
}

func benchCreateReq(b *testing.B, s *Store, n int) *groupReq {
	ctx := context.Background()
	id := fmt.Sprintf("job-%07d", n)
	spec := domain.Spec{
		Name: "calibrate", Agent: domain.AgentAlphaCal, DatasetID: "VLASS2.1.T10t01",
		System: domain.SystemFrontera, Partition: "normal", Allocation: "AST21001",
		Resources:   domain.Resources{Nodes: 1, CoresPerNode: 4, Walltime: time.Hour},
		Environment: map[string]string{"A": "1"}, Tags: []string{"sweep:bench"},
	}
	spec.ApplyDefaults()
	j := domain.NewJob(id, "alice", spec, fmt.Sprintf("key-%d", n), "corr-"+id, domain.Cost{NodeHours: 1}, time.Now())
	j.Version = 1
	meta := events.Meta{Producer: "job-orchestrator", UserID: j.Owner, CorrelationID: j.CorrelationID, Sequence: 1}
	lc, err := events.NewEvent(events.JobSubmitted{JobID: j.ID, UserID: j.Owner, JobName: j.Spec.Name, Agent: string(j.Spec.Agent),
		TaccSystem: events.TaccSystemFrontera, Priority: events.JobPriority(j.Spec.Priority), ToStatus: events.JobStatusSubmitted,
		ResourceRequest: events.ResourceRequest{Nodes: 1, CoresPerNode: 4, WalltimeSeconds: 3600}}, meta)
	if err != nil {
		b.Fatal(err)
	}
	audit, err := events.NewEvent(events.AuditActionRecorded{AuditID: "a-" + lc.EventID, Action: events.AuditActionSubmit,
		ActorUserID: j.Owner, ActorRole: "user", ResourceType: "job", ResourceID: j.ID, Outcome: events.AuditOutcomeSuccess},
		events.Meta{Producer: "job-orchestrator", UserID: j.Owner, CorrelationID: j.CorrelationID, CausationID: lc.EventID})
	if err != nil {
		b.Fatal(err)
	}
	doc, err := encodeJob(j)
	if err != nil {
		b.Fatal(err)
	}
	rows, err := s.outboxRows(ctx, j, []app.OutboxRecord{{Event: lc}, {Event: audit}})
	if err != nil {
		b.Fatal(err)
	}
	return &groupReq{ctx: ctx, done: make(chan error, 1), job: j, doc: doc, rows: rows}
}
