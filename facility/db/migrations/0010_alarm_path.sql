-- The alarm path without blind spots (issue 14).

-- The outbox relay: alarm and work-order events go from the events table to the site's MQTT
-- alarms topic in id order (ids become visible in commit order, 0008). One row per site holds
-- the last event id the broker acknowledged; a relay that crashed resumes after it.
CREATE TABLE outbox_relay (
    site_id       text PRIMARY KEY,
    published_id  bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- A site that had events before the relay existed starts after them (they were published
-- directly by then).
INSERT INTO outbox_relay (site_id, published_id)
    SELECT site_id, max(id) FROM events GROUP BY site_id;
CREATE INDEX events_site_id ON events (site_id, id);

-- A fault replayed from a gateway's queue is recorded once, however often its messages are
-- redelivered (a crash of rules between commit and acknowledgement).
CREATE UNIQUE INDEX alarms_historical_once ON alarms (source, alarm_type, raised_at)
    WHERE historical;

-- Work orders opened for a fault found after the fact (it began and ended while a gateway was
-- cut off): the order says so.
ALTER TABLE work_orders ADD COLUMN after_the_fact boolean NOT NULL DEFAULT false;
