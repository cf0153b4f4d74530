-- Resubmission and tags. resubmitted_from duplicates the doc's
-- ResubmittedFrom (the job a resubmission copied); job_tags holds one row per
-- tag of a job, for ListJobs' tag filter (a job matches when it carries every
-- tag asked for). Tags never change after submission. The actor and the
-- scheduler's code of each transition live in the doc's History, which is
-- read and written whole with the job.
ALTER TABLE jobs ADD COLUMN resubmitted_from TEXT;
CREATE INDEX jobs_by_resubmitted_from ON jobs (resubmitted_from) WHERE resubmitted_from IS NOT NULL;

CREATE TABLE job_tags (
	tag    TEXT NOT NULL,
	job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
	PRIMARY KEY (tag, job_id)
);
CREATE INDEX job_tags_by_job ON job_tags (job_id);

INSERT INTO job_tags (tag, job_id)
	SELECT DISTINCT t.tag, j.id FROM jobs j,
		jsonb_array_elements_text(CASE WHEN jsonb_typeof(j.doc::jsonb -> 'Spec' -> 'Tags') = 'array'
			THEN j.doc::jsonb -> 'Spec' -> 'Tags' ELSE '[]'::jsonb END) AS t(tag)
	ON CONFLICT DO NOTHING;
