-- The worker process a redelivered event's run is under way in, cleared when the run ends
-- with a decision, and the steps the event had recorded when that run began. A run is
-- counted as cut short only when another process finds it still set, and the count starts
-- again when the event got further meanwhile: copies of one event in one process, an event
-- that waited behind others and never began, and a long event making headway through a
-- restart storm are no crash loop.

ALTER TABLE event_runs ADD COLUMN last_run_by TEXT;
ALTER TABLE event_runs ADD COLUMN steps_seen INTEGER;
