-- Nothing fails silently (issue 21): the acknowledgement SLA of alarms, step timers of work
-- orders, SMS and voice-call notifications with deferred, cancellable deliveries.

-- One row per alarm under the acknowledgement SLA (adopted by the dispatcher when it is
-- raised unacknowledged and annunciated). due_at is the next deadline: the acknowledge time,
-- then each escalation level and re-notification; NULL once acknowledged or nothing is left.
CREATE TABLE alarm_timers (
    alarm_id      bigint PRIMARY KEY REFERENCES alarms(id) ON DELETE CASCADE,
    site_id       text NOT NULL,
    policy        text NOT NULL CHECK (policy IN ('with_order', 'without_order')),
    ack_due_at    timestamptz NOT NULL,              -- raised_at + acknowledge time
    level         integer NOT NULL DEFAULT 0,        -- escalation levels fired so far
    renotified    integer NOT NULL DEFAULT 0,
    notified      text[] NOT NULL DEFAULT '{}',      -- people told so far
    overdue_at    timestamptz,                       -- when the acknowledge time ran out
    due_at        timestamptz,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX alarm_timers_due ON alarm_timers (due_at) WHERE due_at IS NOT NULL;

-- Step timers: a step with a time limit starts its clock when its order is raised or
-- accepted (clock, from the procedure); due_at = started_at + time_limit_s; overdue_at is
-- when the dispatcher escalated it (once).
ALTER TABLE work_order_steps
    ADD COLUMN clock text NOT NULL DEFAULT 'accepted' CHECK (clock IN ('raised', 'accepted')),
    ADD COLUMN started_at timestamptz,
    ADD COLUMN due_at timestamptz,
    ADD COLUMN overdue_at timestamptz;
CREATE INDEX work_order_steps_due ON work_order_steps (due_at)
    WHERE due_at IS NOT NULL AND done_at IS NULL AND overdue_at IS NULL;

-- Deliveries about an alarm (no work order), and deferred ones that are dropped when the
-- alarm is acknowledged / the order accepted / the step done before they are due
-- (state cancelled): the voice call of a critical alarm nobody answered.
ALTER TABLE notification_deliveries
    ADD COLUMN alarm_id bigint REFERENCES alarms(id) ON DELETE SET NULL,
    ADD COLUMN step_seq integer,
    ADD COLUMN cancel_when text CHECK (cancel_when IN
        ('alarm_acknowledged', 'order_accepted', 'step_done')),
    DROP CONSTRAINT notification_deliveries_state_check,
    ADD CONSTRAINT notification_deliveries_state_check
        CHECK (state IN ('pending', 'sent', 'failed', 'cancelled'));
CREATE INDEX notification_deliveries_alarm ON notification_deliveries (alarm_id);
