-- Alarm lifecycle completeness (issue 6, alarm side): operator controls per alarm point
-- (shelved with an expiry, out of service), consequential grouping (an alarm suppressed by
-- design under its parent, e.g. a lift's stop under the building's power outage) and alarms
-- recorded from replayed (historical) telemetry.

-- One row per alarm point (source, alarm_type) an operator has shelved or taken out of
-- service; a new alarm of that point inherits it, so a shelve or an out-of-service outlives
-- the alarm instance it was set on.
CREATE TABLE alarm_controls (
    source          text NOT NULL,
    alarm_type      text NOT NULL,
    site_id         text NOT NULL,
    shelved_until   timestamptz,
    shelved_by      text,
    out_of_service  boolean NOT NULL DEFAULT false,
    oos_by          text,
    comment         text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (source, alarm_type)
);
CREATE INDEX alarm_controls_shelved ON alarm_controls (shelved_until)
    WHERE shelved_until IS NOT NULL;

ALTER TABLE alarms
    ADD COLUMN out_of_service  boolean NOT NULL DEFAULT false,
    ADD COLUMN parent_alarm_id bigint REFERENCES alarms(id),
    ADD COLUMN historical      boolean NOT NULL DEFAULT false;
CREATE INDEX alarms_parent ON alarms (parent_alarm_id) WHERE parent_alarm_id IS NOT NULL;
CREATE INDEX alarms_site_raised ON alarms (site_id, raised_at);
CREATE INDEX alarm_events_time ON alarm_events (time);
CREATE INDEX alarms_shelved ON alarms (shelved_until) WHERE shelved_until IS NOT NULL;

-- The work order an alarm opened or was linked to (NULL: none yet, e.g. while suppressed or
-- out of service; the rules service opens it when the alarm annunciates again).
ALTER TABLE alarms ADD COLUMN work_order_id bigint REFERENCES work_orders(id);
