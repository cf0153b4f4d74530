package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// submitFile submits the jobs of a job file (see jobFile) and prints one
// line per job; a job whose idempotency key was used before is printed as
// replayed. It carries on after a refused job and fails at the end.
func submitFile(ctx context.Context, cl jobsClient, path, defaultKey string, dryRun bool, stdout io.Writer) error {
	f, err := loadJobFile(path)
	if err != nil {
		return usageError{"jobs submit -f: " + err.Error()}
	}
	if defaultKey == "" {
		defaultKey = uuid.NewString()
	}
	jobs, err := f.plan(defaultKey)
	if err != nil {
		return usageError{fmt.Sprintf("jobs submit -f %s: %v", path, err)}
	}
	if dryRun {
		for _, j := range jobs {
			fmt.Fprintf(stdout, "would submit %s  key %s  %s\n", j.spec.GetName(), j.key, j.point)
		}
		return nil
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	var submitted, replayed, refused int
	for _, j := range jobs {
		resp, err := client.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: j.key, Spec: j.spec})
		if err != nil {
			refused++
			fmt.Fprintf(stdout, "%s\n", strings.TrimSpace(j.point+" "+callError("submit job "+j.spec.GetName(), err).Error()))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		note := "submitted"
		if resp.GetReplayed() {
			note = "replayed"
			replayed++
		} else {
			submitted++
		}
		fmt.Fprintf(stdout, "job %s %s %s  %s\n", resp.GetJob().GetJobId(), statusName(resp.GetJob().GetStatus()), note,
			strings.TrimSpace(j.spec.GetName()+"  "+j.point))
	}
	what := "job file"
	if f.Sweep != nil {
		what = "sweep " + f.Sweep.Name + " (tag sweep:" + f.Sweep.Name + ")"
	}
	fmt.Fprintf(stdout, "%s: %d jobs, %d submitted, %d replayed, %d refused\n", what, len(jobs), submitted, replayed, refused)
	if refused > 0 {
		return fmt.Errorf("jobs submit -f: %d of %d jobs refused", refused, len(jobs))
	}
	return nil
}

// statusSummary is the summary line of a listing: how many jobs are in
// each status.
func statusSummary(jobs []*jobpb.Job) string {
	n := map[jobpb.JobStatus]int{}
	for _, j := range jobs {
		n[j.GetStatus()]++
	}
	return fmt.Sprintf("%d jobs: %d submitted, %d queued, %d running, %d completed, %d failed, %d cancelled",
		len(jobs), n[jobpb.JobStatus_JOB_STATUS_SUBMITTED], n[jobpb.JobStatus_JOB_STATUS_QUEUED], n[jobpb.JobStatus_JOB_STATUS_RUNNING],
		n[jobpb.JobStatus_JOB_STATUS_COMPLETED], n[jobpb.JobStatus_JOB_STATUS_FAILED], n[jobpb.JobStatus_JOB_STATUS_CANCELLED])
}

func runJobsHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs history", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print the history as JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"jobs history: want exactly one job id"}
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.GetJobHistory(ctx, &jobpb.GetJobHistoryRequest{JobId: pos[0]})
	if err != nil {
		return callError("job history", err)
	}
	if *asJSON {
		return printJSON(stdout, resp)
	}
	printHistory(stdout, resp)
	return nil
}

// printHistory prints a job's transitions as a table: when, the change,
// who made it, the scheduler's code, the job's error code and why.
func printHistory(w io.Writer, h *jobpb.GetJobHistoryResponse) {
	j := h.GetJob()
	fmt.Fprintf(w, "job %s %s  %s\n", j.GetJobId(), statusName(j.GetStatus()), j.GetSpec().GetName())
	if from := j.GetResubmittedFrom(); from != "" {
		fmt.Fprintf(w, "resubmitted from %s\n", from)
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tFROM\tTO\tACTOR\tSCHEDULER CODE\tERROR CODE\tREASON")
	for _, ev := range h.GetEvents() {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ev.GetSequence(),
			ev.GetOccurredAt().AsTime().Local().Format(time.DateTime), statusName(ev.GetFromStatus()), statusName(ev.GetToStatus()),
			dash(ev.GetActor()), dash(ev.GetSchedulerCode()), dash(ev.GetErrorCode()), dash(ev.GetReason()))
	}
	_ = tw.Flush()
}

func runJobsResubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs resubmit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	var (
		walltime  = fs.Duration("walltime", 0, "new walltime, e.g. 2h")
		nodes     = fs.Int("nodes", 0, "new number of nodes")
		memory    = fs.Int64("memory-mb", 0, "new memory per node in MiB")
		partition = fs.String("partition", "", "new partition")
		key       = fs.String("key", "", "idempotency key: a retry with the same key returns the same job (default: a new UUID)")
	)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"jobs resubmit: want exactly one job id"}
	}
	req := &jobpb.ResubmitJobRequest{JobId: pos[0], IdempotencyKey: *key,
		Overrides: &jobpb.JobSpec{Resources: &jobpb.Resources{}}, UpdateMask: &fieldmaskpb.FieldMask{}}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "walltime":
			req.Overrides.Resources.Walltime = durationpb.New(*walltime)
			req.UpdateMask.Paths = append(req.UpdateMask.Paths, "resources.walltime")
		case "nodes":
			req.Overrides.Resources.Nodes = int32(*nodes)
			req.UpdateMask.Paths = append(req.UpdateMask.Paths, "resources.nodes")
		case "memory-mb":
			req.Overrides.Resources.MemoryMb = *memory
			req.UpdateMask.Paths = append(req.UpdateMask.Paths, "resources.memory_mb")
		case "partition":
			req.Overrides.Partition = *partition
			req.UpdateMask.Paths = append(req.UpdateMask.Paths, "partition")
		}
	})
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = uuid.NewString()
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.ResubmitJob(ctx, req)
	if err != nil {
		return callError("resubmit job", err)
	}
	j := resp.GetJob()
	note := ""
	if resp.GetReplayed() {
		note = " (idempotency key seen before: the existing job)"
	}
	fmt.Fprintf(stdout, "job %s %s, resubmitted from %s%s\n", j.GetJobId(), statusName(j.GetStatus()), j.GetResubmittedFrom(), note)
	if len(req.UpdateMask.Paths) > 0 {
		fmt.Fprintf(stdout, "  changed        %s\n", strings.Join(req.UpdateMask.Paths, ", "))
	}
	r := j.GetSpec().GetResources()
	fmt.Fprintf(stdout, "  resources      %d node(s) x %d cores, %d MiB, walltime %s on %s/%s\n", r.GetNodes(), r.GetCoresPerNode(),
		r.GetMemoryMb(), r.GetWalltime().AsDuration(), systemName(j.GetSpec().GetTaccSystem()), j.GetSpec().GetPartition())
	return nil
}
