-- The active jobs by status, then age: the reconciler's reads take the
-- oldest jobs of one status (ClaimSubmitted: SUBMITTED; its poll list:
-- QUEUED and RUNNING) as a range of this index, in order, and stop at their
-- limit. jobs_active_by_updated, ordered by age alone, made them read every
-- job of the other active statuses too, or every job of theirs and sort
-- (SQLite chose jobs_by_status_created). version makes the poll list's
-- read of ids and versions an index-only one.
CREATE INDEX jobs_active_by_status ON jobs (status, updated_at, id, version) WHERE status IN ('SUBMITTED', 'QUEUED', 'RUNNING');
DROP INDEX jobs_active_by_updated;
