package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
)

// Environment variables chctl jobs reads for its defaults.
const (
	envJobAddr    = "FLEET_JOB_ADDR"
	envAllocation = "FLEET_ALLOCATION"
	defaultAddr   = "127.0.0.1:50051"
	defaultAlloc  = "AST21001"
)

const jobsUsage = `usage:
  chctl jobs submit -name NAME -agent AGENT -system SYSTEM -partition P [-dataset ID]
                    [-nodes N] [-cores N] [-gpus N] [-memory-mb MB] [-walltime D]
                    [-script FILE | -command 'CMD ARGS'] [-allocation A] [-env K=V ...]
                    [-tag T ...] [-priority low|normal|high] [-idempotency-key K]
      submit a job and print its id, status, cost estimate and trace id.
      AGENT is AlphaCal, ImageReconstruction, AnomalyDetection or custom;
      SYSTEM is frontera, stampede3, lonestar6 or vista.
  chctl jobs submit -f FILE [-dry-run]
      submit the job, or the sweep (one job per point of a parameter grid,
      tagged sweep:NAME), of a YAML or JSON job file (docs/job-files.md);
      running it again submits nothing twice.
  chctl jobs get ID [-json]            print one job
  chctl jobs list [-status S,S] [-system SYSTEM] [-tag T ...] [-limit N] [-json]
                                       list jobs, newest first; with -tag a
                                       summary line counts them per status
  chctl jobs history ID [-json]        every transition: when, who, why, the scheduler's code
  chctl jobs resubmit ID [-walltime D] [-nodes N] [-memory-mb M] [-partition P] [-key K]
                                       a new job from ID's spec with these changes
  chctl jobs cancel ID [-reason TEXT]  cancel a job that has not finished
  chctl jobs watch ID [-replay]        stream the job's transitions until it ends
  chctl jobs logs ID [-f] [-stderr] [-offset N]
                                       print the job's standard output (or error);
                                       -f follows it live until the job ends
  chctl jobs outputs ID                list the files of the job's output directory
  chctl jobs download ID PATH [-o FILE]
                                       download one of them; its SHA-256 is verified
                                       before FILE (default: its name here) is written

Every command takes -addr HOST:PORT (default $` + envJobAddr + ` or ` + defaultAddr + `)
and -token JWT (default $` + envToken + `; "chctl token" mints a development token).
Flags may follow the job id.`

// jobsClient is the connection settings shared by the jobs subcommands.
type jobsClient struct{ serviceFlags }

func addClientFlags(fs *flag.FlagSet) jobsClient {
	return jobsClient{addServiceFlags(fs, "job-orchestrator", envJobAddr, defaultAddr)}
}

// dial connects to the orchestrator; the returned context carries the token.
func (c jobsClient) dial(ctx context.Context) (context.Context, jobpb.JobServiceClient, func(), error) {
	ctx, conn, err := c.serviceFlags.dial(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return ctx, jobpb.NewJobServiceClient(conn), func() { _ = conn.Close() }, nil
}

// parseInterspersed parses flags that may come before or after the
// positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runJobs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, jobsUsage)
		if len(args) == 0 {
			return usageError{"jobs: missing subcommand (see chctl jobs help)"}
		}
		return nil
	}
	switch args[0] {
	case "submit":
		return runJobsSubmit(ctx, args[1:], stdout, stderr)
	case "get":
		return runJobsGet(ctx, args[1:], stdout, stderr)
	case "list":
		return runJobsList(ctx, args[1:], stdout, stderr)
	case "cancel":
		return runJobsCancel(ctx, args[1:], stdout, stderr)
	case "watch":
		return runJobsWatch(ctx, args[1:], stdout, stderr)
	case "logs":
		return runJobsLogs(ctx, args[1:], stdout, stderr)
	case "outputs":
		return runJobsOutputs(ctx, args[1:], stdout, stderr)
	case "download":
		return runJobsDownload(ctx, args[1:], stdout, stderr)
	case "history":
		return runJobsHistory(ctx, args[1:], stdout, stderr)
	case "resubmit":
		return runJobsResubmit(ctx, args[1:], stdout, stderr)
	default:
		return usageError{fmt.Sprintf("jobs: unknown subcommand %q (see chctl jobs help)", args[0])}
	}
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func runJobsSubmit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	alloc := os.Getenv(envAllocation)
	if alloc == "" {
		alloc = defaultAlloc
	}
	var (
		name       = fs.String("name", "", "job name: letters, digits, '-', '_' and '.'")
		agent      = fs.String("agent", "", "AlphaCal, ImageReconstruction, AnomalyDetection or custom")
		dataset    = fs.String("dataset", "", "input dataset id (required except for custom)")
		system     = fs.String("system", "", "frontera, stampede3, lonestar6 or vista")
		partition  = fs.String("partition", "", "Slurm partition on the system, e.g. normal or development")
		nodes      = fs.Int("nodes", 1, "compute nodes")
		cores      = fs.Int("cores", 0, "cores per node (0: the agent's default, 1 for custom)")
		gpus       = fs.Int("gpus", 0, "GPUs per node")
		memory     = fs.Int64("memory-mb", 0, "memory per node in MiB (0: the partition's default)")
		walltime   = fs.Duration("walltime", 0, "longest run time, e.g. 30m (0: the agent's default, 1h for custom)")
		scriptFile = fs.String("script", "", "file with the batch script to run")
		command    = fs.String("command", "", "a command line to run instead of a script")
		allocation = fs.String("allocation", alloc, "TACC allocation (project) charged (default $"+envAllocation+")")
		priority   = fs.String("priority", "", "low, normal or high")
		idemKey    = fs.String("idempotency-key", "", "makes a retried submission return the same job (default: a new UUID)")
		file       = fs.String("f", "", "YAML or JSON job file: one job or a sweep (docs/job-files.md)")
		dryRun     = fs.Bool("dry-run", false, "with -f: print the jobs the file asks for, submit nothing")
		envs, tags listFlag
	)
	fs.Var(&envs, "env", "KEY=VALUE for the job's environment (repeatable)")
	fs.Var(&tags, "tag", "a label (repeatable)")
	if pos, err := parseInterspersed(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usageError{fmt.Sprintf("jobs submit: unexpected argument %q", pos[0])}
	}
	if *file != "" {
		var specFlag string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "f", "dry-run", "idempotency-key", "addr", "token":
			default:
				specFlag = f.Name
			}
		})
		if specFlag != "" {
			return usageError{fmt.Sprintf("jobs submit: -%s and -f: the job file holds the whole job", specFlag)}
		}
		return submitFile(ctx, cl, *file, *idemKey, *dryRun, stdout)
	}

	spec := &jobpb.JobSpec{
		Name: *name, DatasetId: *dataset, Partition: *partition, Allocation: *allocation, Tags: tags,
		Resources: &jobpb.Resources{Nodes: int32(*nodes), CoresPerNode: int32(*cores), GpusPerNode: int32(*gpus), MemoryMb: *memory},
	}
	var err error
	if spec.Agent, err = parseAgent(*agent); err != nil {
		return err
	}
	if spec.TaccSystem, err = parseSystem(*system); err != nil {
		return err
	}
	if spec.Priority, err = parsePriority(*priority); err != nil {
		return err
	}
	custom := spec.Agent == jobpb.Agent_AGENT_CUSTOM
	if spec.Resources.CoresPerNode == 0 && custom {
		spec.Resources.CoresPerNode = 1
	}
	switch {
	case *walltime > 0:
		spec.Resources.Walltime = durationpb.New(*walltime)
	case custom:
		spec.Resources.Walltime = durationpb.New(time.Hour)
	}
	switch {
	case *scriptFile != "" && *command != "":
		return usageError{"jobs submit: set -script or -command, not both"}
	case *scriptFile != "":
		b, err := os.ReadFile(*scriptFile)
		if err != nil {
			return fmt.Errorf("jobs submit: %w", err)
		}
		spec.Payload = &jobpb.JobSpec_Script{Script: string(b)}
	case *command != "":
		spec.Payload = &jobpb.JobSpec_Command{Command: *command}
	}
	if len(envs) > 0 {
		spec.Environment = map[string]string{}
		for _, kv := range envs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageError{fmt.Sprintf("jobs submit: -env %q: want KEY=VALUE", kv)}
			}
			spec.Environment[k] = v
		}
	}
	key := *idemKey
	if key == "" {
		key = uuid.NewString()
	}

	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	traceID := newTraceID()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent(traceID))
	resp, err := client.SubmitJob(ctx, &jobpb.SubmitJobRequest{IdempotencyKey: key, Spec: spec})
	if err != nil {
		return callError("submit job", err)
	}
	j := resp.GetJob()
	note := ""
	if resp.GetReplayed() {
		note = " (idempotency key seen before: the existing job)"
	}
	fmt.Fprintf(stdout, "job %s %s%s\n", j.GetJobId(), statusName(j.GetStatus()), note)
	fmt.Fprintf(stdout, "  cost estimate  $%.2f (%.2f node-hours, %.2f GPU-hours)\n",
		j.GetCostEstimate().GetUsd(), j.GetCostEstimate().GetNodeHours(), j.GetCostEstimate().GetGpuHours())
	fmt.Fprintf(stdout, "  correlation id %s\n", j.GetCorrelationId())
	fmt.Fprintf(stdout, "  trace id       %s\n", traceID)
	return nil
}

func runJobsGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs get", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print the job as JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"jobs get: want exactly one job id"}
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.GetJob(ctx, &jobpb.GetJobRequest{JobId: pos[0]})
	if err != nil {
		return callError("get job", err)
	}
	if *asJSON {
		return printJSON(stdout, resp.GetJob())
	}
	printJob(stdout, resp.GetJob())
	return nil
}

func runJobsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	statuses := fs.String("status", "", "comma-separated statuses to keep, e.g. queued,running")
	system := fs.String("system", "", "keep jobs on this system")
	limit := fs.Int("limit", 0, "the most jobs to print (default 50, or 10000 with -tag)")
	var tags listFlag
	fs.Var(&tags, "tag", "keep jobs carrying this tag (repeatable: every one), e.g. sweep:NAME")
	asJSON := fs.Bool("json", false, "print one JSON object per job")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("jobs list: unexpected argument %q", pos[0])}
	}
	req := &jobpb.ListJobsRequest{Tags: tags}
	for s := range strings.SplitSeq(*statuses, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		st, err := parseStatus(s)
		if err != nil {
			return err
		}
		req.Statuses = append(req.Statuses, st)
	}
	if *system != "" {
		if req.TaccSystem, err = parseSystem(*system); err != nil {
			return err
		}
	}
	switch {
	case *limit == 0 && len(tags) > 0:
		*limit = 10000
	case *limit == 0:
		*limit = 50
	case *limit < 1:
		return usageError{"jobs list: -limit must be at least 1"}
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	var jobs []*jobpb.Job
	for len(jobs) < *limit {
		req.PageSize = int32(min(*limit-len(jobs), 500))
		resp, err := client.ListJobs(ctx, req)
		if err != nil {
			return callError("list jobs", err)
		}
		jobs = append(jobs, resp.GetJobs()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if *asJSON {
		for _, j := range jobs {
			b, err := protojson.Marshal(j)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, string(b))
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB ID\tNAME\tAGENT\tSYSTEM\tSTATUS\tCREATED")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.GetJobId(), j.GetSpec().GetName(), agentName(j.GetSpec().GetAgent()),
			systemName(j.GetSpec().GetTaccSystem()), statusName(j.GetStatus()), j.GetCreatedAt().AsTime().Local().Format(time.DateTime))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(tags) > 0 {
		fmt.Fprintln(stdout, statusSummary(jobs))
	}
	return nil
}

func runJobsCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs cancel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	reason := fs.String("reason", "", "why the job is cancelled (recorded in the audit trail)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"jobs cancel: want exactly one job id"}
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := client.CancelJob(ctx, &jobpb.CancelJobRequest{JobId: pos[0], Reason: *reason})
	if err != nil {
		return callError("cancel job", err)
	}
	fmt.Fprintf(stdout, "job %s %s\n", resp.GetJob().GetJobId(), statusName(resp.GetJob().GetStatus()))
	return nil
}

func runJobsWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cl := addClientFlags(fs)
	replay := fs.Bool("replay", false, "print the transitions already recorded first")
	prefix := fs.String("prefix", "", "text printed before every line (to tell several watches apart)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"jobs watch: want exactly one job id"}
	}
	ctx, client, done, err := cl.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	stream, err := client.WatchJob(ctx, &jobpb.WatchJobRequest{JobId: pos[0], ReplayHistory: *replay})
	if err != nil {
		return callError("watch job", err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return callError("watch job", err)
		}
		ev := resp.GetEvent()
		line := fmt.Sprintf("%s%s  #%d  %-9s -> %s", *prefix, ev.GetOccurredAt().AsTime().Local().Format("15:04:05.000"),
			ev.GetSequence(), statusName(ev.GetFromStatus()), statusName(ev.GetToStatus()))
		if ev.GetReason() != "" {
			line += "  (" + ev.GetReason() + ")"
		}
		fmt.Fprintln(stdout, line)
		if terminal(ev.GetToStatus()) {
			return nil
		}
	}
}

func terminal(s jobpb.JobStatus) bool {
	switch s {
	case jobpb.JobStatus_JOB_STATUS_COMPLETED, jobpb.JobStatus_JOB_STATUS_FAILED, jobpb.JobStatus_JOB_STATUS_CANCELLED:
		return true
	}
	return false
}

// callError turns a gRPC error into a readable one: the code, the message
// and one line per field violation.
func callError(op string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", op, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: %s", op, st.Code(), st.Message())
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fmt.Fprintf(&b, "\n  %s: %s", v.GetField(), v.GetDescription())
			}
		}
	}
	return errors.New(b.String())
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func printJob(w io.Writer, j *jobpb.Job) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	s := j.GetSpec()
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	ts := func(t interface{ AsTime() time.Time }, set bool) string {
		if !set {
			return ""
		}
		return t.AsTime().Local().Format(time.RFC3339)
	}
	row("job id", j.GetJobId())
	row("name", s.GetName())
	row("owner", j.GetUserId())
	row("status", statusName(j.GetStatus()))
	row("agent", agentName(s.GetAgent()))
	row("dataset", s.GetDatasetId())
	row("system", systemName(s.GetTaccSystem())+"/"+s.GetPartition())
	r := s.GetResources()
	row("resources", fmt.Sprintf("%d node(s) x %d cores, %d GPUs, walltime %s", r.GetNodes(), r.GetCoresPerNode(), r.GetGpusPerNode(), r.GetWalltime().AsDuration()))
	row("resubmitted from", j.GetResubmittedFrom())
	row("scheduler id", j.GetSchedulerJobId())
	row("waiting", j.GetSchedulerDetail())
	if j.ExitCode != nil {
		row("exit code", fmt.Sprint(j.GetExitCode()))
	}
	row("error", strings.TrimSpace(j.GetErrorCode()+" "+j.GetErrorMessage()))
	row("cost estimate", fmt.Sprintf("$%.2f (%.2f node-hours)", j.GetCostEstimate().GetUsd(), j.GetCostEstimate().GetNodeHours()))
	row("created", ts(j.GetCreatedAt(), j.CreatedAt != nil))
	row("queued", ts(j.GetQueuedAt(), j.QueuedAt != nil))
	row("started", ts(j.GetStartedAt(), j.StartedAt != nil))
	row("finished", ts(j.GetFinishedAt(), j.FinishedAt != nil))
	row("correlation id", j.GetCorrelationId())
	_ = tw.Flush()
}

// enumName matches s against names after dropping a prefix, '-' and '_'
// and ignoring case.
func enumName(s string) string {
	return strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.TrimSpace(s)))
}

func parseAgent(s string) (jobpb.Agent, error) {
	switch enumName(s) {
	case "alphacal":
		return jobpb.Agent_AGENT_ALPHA_CAL, nil
	case "imagereconstruction":
		return jobpb.Agent_AGENT_IMAGE_RECONSTRUCTION, nil
	case "anomalydetection":
		return jobpb.Agent_AGENT_ANOMALY_DETECTION, nil
	case "custom":
		return jobpb.Agent_AGENT_CUSTOM, nil
	case "":
		return 0, usageError{"jobs submit: -agent is required (AlphaCal, ImageReconstruction, AnomalyDetection or custom)"}
	}
	return 0, usageError{fmt.Sprintf("jobs submit: unknown agent %q (AlphaCal, ImageReconstruction, AnomalyDetection or custom)", s)}
}

func agentName(a jobpb.Agent) string {
	switch a {
	case jobpb.Agent_AGENT_ALPHA_CAL:
		return "AlphaCal"
	case jobpb.Agent_AGENT_IMAGE_RECONSTRUCTION:
		return "ImageReconstruction"
	case jobpb.Agent_AGENT_ANOMALY_DETECTION:
		return "AnomalyDetection"
	case jobpb.Agent_AGENT_CUSTOM:
		return "custom"
	}
	return a.String()
}

func parseSystem(s string) (jobpb.TaccSystem, error) {
	if v, ok := jobpb.TaccSystem_value["TACC_SYSTEM_"+strings.ToUpper(enumName(s))]; ok && v != 0 {
		return jobpb.TaccSystem(v), nil
	}
	return 0, usageError{fmt.Sprintf("unknown system %q (frontera, stampede3, lonestar6 or vista)", s)}
}

func systemName(s jobpb.TaccSystem) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TACC_SYSTEM_"))
}

func parseStatus(s string) (jobpb.JobStatus, error) {
	if v, ok := jobpb.JobStatus_value["JOB_STATUS_"+strings.ToUpper(enumName(s))]; ok && v != 0 {
		return jobpb.JobStatus(v), nil
	}
	return 0, usageError{fmt.Sprintf("unknown status %q (submitted, queued, running, completed, failed or cancelled)", s)}
}

func statusName(s jobpb.JobStatus) string {
	if s == jobpb.JobStatus_JOB_STATUS_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(s.String(), "JOB_STATUS_")
}

func parsePriority(s string) (jobpb.Priority, error) {
	if s == "" {
		return jobpb.Priority_PRIORITY_UNSPECIFIED, nil
	}
	if v, ok := jobpb.Priority_value["PRIORITY_"+strings.ToUpper(enumName(s))]; ok && v != 0 {
		return jobpb.Priority(v), nil
	}
	return 0, usageError{fmt.Sprintf("jobs submit: unknown priority %q (low, normal or high)", s)}
}

// newTraceID returns a random W3C trace id; the submission's spans (and
// those of the events it causes) are recorded under it.
func newTraceID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// traceparent is a sampled W3C traceparent header with a random parent span.
func traceparent(traceID string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "00-" + traceID + "-" + hex.EncodeToString(b) + "-01"
}
