package slurm

// What a researcher can do about a job's end state or pending reason, in
// one sentence each. Reasons are Slurm's (squeue %r, state_reason).
var (
	stateAdvice = map[string]string{
		"TIMEOUT":       "The job reached its time limit: ask for a longer walltime, or save progress (checkpoint) and resume in a new job.",
		"OUT_OF_MEMORY": "The job used more memory than it was given: ask for more memory per node, or spread the work over more nodes.",
		"NODE_FAIL":     "A node of the job failed, not the job itself: submit it again.",
		"BOOT_FAIL":     "A node could not be booted for the job: submit it again; if it recurs, tell the system's support.",
		"PREEMPTED":     "A job of higher priority took the nodes: submit it again, or use a partition or QOS that is not preempted.",
		"DEADLINE":      "The job could not finish before its deadline: submit it again with a later deadline or a shorter walltime.",
		"FAILED":        "The job's script exited with an error: read its .err and .out files in the job's output directory.",
	}
	pendingAdvice = map[string]string{
		"Resources":                     "The job waits for nodes to become free; it starts by itself.",
		"Priority":                      "Jobs of higher priority are ahead of this one; it starts by itself.",
		"Dependency":                    "The job waits for the jobs it depends on to end.",
		"DependencyNeverSatisfied":      "A job this one depends on failed, so it can never start: cancel it and submit it again.",
		"QOSMaxJobsPerUserLimit":        "You have as many jobs as your QOS allows; this one starts when one of yours ends.",
		"QOSMaxSubmitJobPerUserLimit":   "You have submitted as many jobs as your QOS allows; cancel or wait for some of them.",
		"QOSMaxWallDurationPerJobLimit": "The walltime is longer than the QOS allows: cancel the job and submit it with a shorter walltime.",
		"QOSMaxNodePerJobLimit":         "The job asks for more nodes than the QOS allows: submit it with fewer nodes.",
		"QOSMaxCpuPerUserLimit":         "Your running jobs use as many CPUs as your QOS allows; this one starts when some of them end.",
		"AssocGrpCPUMinutesLimit":       "The allocation has no CPU hours left: ask the allocation's PI to renew or extend it.",
		"AssocGrpBillingMinutes":        "The allocation has no service units left: ask the allocation's PI to renew or extend it.",
		"AssocMaxJobsLimit":             "You have as many jobs as your allocation allows; this one starts when one of yours ends.",
		"ReqNodeNotAvail":               "Nodes the job needs are down, drained or reserved (e.g. maintenance); it starts when they return, or cancel it and ask for other nodes.",
		"PartitionTimeLimit":            "The walltime is longer than the partition allows: cancel the job and submit it with a shorter walltime.",
		"PartitionNodeLimit":            "The job asks for more nodes than the partition allows: submit it with fewer nodes.",
		"PartitionDown":                 "The partition is down; the job starts when it returns, or submit it to another partition.",
		"PartitionInactive":             "The partition is inactive; the job starts when it returns, or submit it to another partition.",
		"JobHeldUser":                   "The job is held by its owner: release it (scontrol release) or cancel it.",
		"JobHeldAdmin":                  "The job is held by an administrator: ask the system's support why.",
		"BeginTime":                     "The job waits for the start time it was given.",
		"Reservation":                   "The job waits for its reservation to begin.",
		"InvalidAccount":                "The account (allocation) is not valid for you on this system: cancel the job and submit it with an allocation you belong to.",
		"InvalidQOS":                    "The QOS is not valid for you: cancel the job and submit it with another QOS.",
		"MaxRequeue":                    "The job was requeued too often: submit it again.",
		"launch failed requeued held":   "The job could not be started on its node and is held: release it or submit it again.",
		"Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions": "Nodes the job needs are unavailable; it starts when they return.",
	}
)

// Advice returns one sentence of what to do about a job that ended in
// state, or that waits for reason; "" when there is nothing to say.
func Advice(state, reason string) string {
	if state == "PENDING" {
		return pendingAdvice[reason]
	}
	return stateAdvice[state]
}
