-- The API's live stream reads the event outbox by id (SSE id = events.id) and resumes after
-- the last id a page saw. Identity values are handed out at insert time, not at commit, so two
-- concurrent writers could commit ids out of order and a reader that already passed the
-- later id would never see the earlier one. This trigger serialises event writers from their
-- first event insert to their commit (a transaction-scoped advisory lock), so ids become
-- visible in increasing order and "id > last seen" never skips a row. Writers record their
-- events last in their transaction, so the lock is held only for the commit.

CREATE FUNCTION events_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('facility.events', 0));
    RETURN NULL;
END $$;

CREATE TRIGGER events_commit_order BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_commit_order();

-- Lists the board and the technician page ask for on every change.
CREATE INDEX IF NOT EXISTS work_orders_assignee ON work_orders (assignee, state);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms (state, priority) WHERE state <> 'normal';

-- Who reported an owner's repair request (业主报修) at the service desk: name, phone, location.
ALTER TABLE work_orders ADD COLUMN IF NOT EXISTS requester jsonb NOT NULL DEFAULT '{}';
