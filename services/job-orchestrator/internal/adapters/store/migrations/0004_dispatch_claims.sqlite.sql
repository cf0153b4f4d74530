-- Dispatch claims in columns, so that one UPDATE ... RETURNING claims a
-- batch of SUBMITTED jobs for one replica (Store.ClaimSubmitted). They are
-- the stored job's DispatchClaim: dispatch_token names the replica holding
-- the claim, dispatch_at is when it claimed (its lease ends dispatch_at plus
-- the claimer's lease), dispatch_uncertain is when the first earlier attempt
-- whose outcome is unknown started. All NULL: not claimed, never attempted.
-- Reads take the claim from these columns, not from the doc.
ALTER TABLE jobs ADD COLUMN dispatch_token TEXT;
ALTER TABLE jobs ADD COLUMN dispatch_at INTEGER;
ALTER TABLE jobs ADD COLUMN dispatch_uncertain INTEGER;

-- Claims held in the doc before: a live claim keeps a full lease from now;
-- an earlier attempt of unknown time is remembered as uncertain since 1970
-- (the scheduler is asked for the job before it is submitted again).
UPDATE jobs SET
	dispatch_token = NULLIF(json_extract(doc, '$.Dispatch.Token'), ''),
	dispatch_at = CASE WHEN COALESCE(json_extract(doc, '$.Dispatch.Token'), '') <> ''
		THEN CAST(strftime('%s', 'now') AS INTEGER) * 1000000000 END,
	dispatch_uncertain = CASE WHEN COALESCE(json_extract(doc, '$.Dispatch.Uncertain'), '0001-01-01T00:00:00Z') <> '0001-01-01T00:00:00Z'
		THEN 1 END
	WHERE status = 'SUBMITTED';
