-- Event outbox: every alarm, work-order and device-status event, in commit order, for the
-- API's live stream (SSE ids are these ids, so a page that reconnects resumes without gaps).
-- A trigger notifies channel facility_events with the new id on commit.

CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time        timestamptz NOT NULL,
    site_id     text NOT NULL,
    kind        text NOT NULL,                   -- alarm.raised, work_order.created, device.status, ...
    payload     jsonb NOT NULL
);
CREATE INDEX events_time ON events (time);

CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('facility_events', NEW.id::text);
    RETURN NULL;
END $$;

CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_notify();
