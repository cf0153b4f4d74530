-- The W3C traceparent of the event a delivery was made for: the delivery
-- and its outcome event join that event's trace.
ALTER TABLE deliveries ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';
