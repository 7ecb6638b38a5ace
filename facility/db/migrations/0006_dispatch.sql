-- Dispatch: staff and on-call rosters (loaded from the site's dispatch file at start-up),
-- who is on call now (a snapshot the rules service refreshes every minute, so the API can
-- show it without the roster logic), SLA timers of work orders, notification deliveries
-- (an outbox: rows are written in the transaction that decided to notify, then sent with
-- retries; every attempt is kept), and preventive maintenance (schedules, one row per
-- occurrence with its work order, run-hours baselines, and a compliance view).

CREATE TABLE dispatch_staff (
    site_id       text NOT NULL,
    username      text NOT NULL,                 -- users.username when the person logs in
    display_name  text NOT NULL DEFAULT '',
    mobile        text NOT NULL DEFAULT '',
    email         text NOT NULL DEFAULT '',
    channels      text[] NOT NULL DEFAULT '{}',  -- personal notification channels
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, username)
);

-- A roster is named after a trade (elevator, electrical, plumbing, fire, general) or an
-- escalation role (engineering_supervisor, property_manager, duty_room, ...).
CREATE TABLE dispatch_rosters (
    site_id       text NOT NULL,
    roster        text NOT NULL,
    timezone      text NOT NULL,                 -- IANA name, e.g. Asia/Shanghai
    backup        text[] NOT NULL DEFAULT '{}',  -- usernames tried when nobody is on call
    channels      text[] NOT NULL DEFAULT '{}',  -- group channels told about its orders
    body          jsonb NOT NULL,                -- the whole validated roster (shifts)
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, roster)
);

-- days: ISO weekdays (1 = Monday) on which the shift STARTS; end <= start means overnight.
CREATE TABLE dispatch_shifts (
    site_id       text NOT NULL,
    roster        text NOT NULL,
    seq           integer NOT NULL,
    name          text NOT NULL,
    days          smallint[] NOT NULL,
    start_time    time NOT NULL,
    end_time      time NOT NULL,
    on_call       text[] NOT NULL,               -- primary first
    PRIMARY KEY (site_id, roster, seq),
    FOREIGN KEY (site_id, roster) REFERENCES dispatch_rosters ON DELETE CASCADE
);

-- Who is on call now, per roster (rank 0 = primary; then the backups), with the shift's
-- window; refreshed by the rules service at start-up and every minute.
CREATE TABLE dispatch_on_call (
    site_id       text NOT NULL,
    roster        text NOT NULL,
    rank          integer NOT NULL,
    username      text NOT NULL,
    shift         text NOT NULL,                 -- shift name, or 'backup'
    since         timestamptz,
    until         timestamptz,
    computed_at   timestamptz NOT NULL,
    PRIMARY KEY (site_id, roster, rank)
);

-- One row per work order under dispatch. due_at is the next SLA deadline (accept /
-- escalation / re-notification, arrive, resolve); NULL once nothing is left to watch.
CREATE TABLE dispatch_timers (
    work_order_id bigint PRIMARY KEY REFERENCES work_orders(id) ON DELETE CASCADE,
    site_id       text NOT NULL,
    procedure_id  text,
    opened_at     timestamptz NOT NULL,
    level         integer NOT NULL DEFAULT 0,    -- escalation levels fired so far
    renotified    integer NOT NULL DEFAULT 0,    -- re-notifications after the chain
    breached      text[] NOT NULL DEFAULT '{}',  -- SLAs missed: accept, arrive, resolve
    notified      text[] NOT NULL DEFAULT '{}',  -- people told so far (re-notified again)
    due_at        timestamptz,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX dispatch_timers_due ON dispatch_timers (due_at) WHERE due_at IS NOT NULL;

-- state: pending (waiting for its next attempt), sent, failed (gave up after the last try).
CREATE TABLE notification_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id         text NOT NULL,
    created_at      timestamptz NOT NULL,
    work_order_id   bigint REFERENCES work_orders(id) ON DELETE SET NULL,
    event           text NOT NULL,               -- assigned, escalated, renotified, sla_breached, ...
    channel         text NOT NULL,               -- channel name from the dispatch file
    channel_type    text NOT NULL,               -- webhook, wecom, dingtalk, email, log
    recipient       text NOT NULL DEFAULT '',    -- e-mail address, or the people mentioned
    subject         text NOT NULL DEFAULT '',
    body            text NOT NULL DEFAULT '',
    payload         jsonb NOT NULL DEFAULT '{}', -- the JSON body of a webhook / robot message
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text NOT NULL DEFAULT '',
    sent_at         timestamptz
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX notification_deliveries_wo ON notification_deliveries (work_order_id);

CREATE TABLE notification_attempts (
    delivery_id   bigint NOT NULL REFERENCES notification_deliveries(id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    time          timestamptz NOT NULL,
    ok            boolean NOT NULL,
    status        integer,                       -- HTTP status or SMTP reply code
    error         text NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE pm_schedules (
    site_id       text NOT NULL,
    id            text NOT NULL,
    checklist     text NOT NULL,
    title         text NOT NULL,
    trade         text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('calendar', 'run_hours')),
    every         text NOT NULL,                 -- '15d', '3mo', '1y', or '500h'
    body          jsonb NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, id)
);

-- One row per schedule, source (device) and occurrence ('2025-03-16' or 'h1500'): inserting
-- it is what makes opening the occurrence's work order happen once. missed: the occurrence
-- passed while the service was down and no order was opened for it.
CREATE TABLE pm_occurrences (
    site_id       text NOT NULL,
    schedule_id   text NOT NULL,
    source        text NOT NULL,
    occurrence    text NOT NULL,
    due_at        timestamptz NOT NULL,
    opened_at     timestamptz NOT NULL,
    work_order_id bigint REFERENCES work_orders(id) ON DELETE SET NULL,
    missed        boolean NOT NULL DEFAULT false,
    PRIMARY KEY (site_id, schedule_id, source, occurrence)
);
CREATE INDEX pm_occurrences_due ON pm_occurrences (due_at);

-- Last run-hours reading seen per schedule, device and point (to detect a threshold crossed).
CREATE TABLE pm_run_hours (
    site_id       text NOT NULL,
    schedule_id   text NOT NULL,
    source        text NOT NULL,
    point         text NOT NULL,
    hours         double precision NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (site_id, schedule_id, source, point)
);

-- PM compliance per occurrence: on_time is true when the order was resolved by its due time,
-- false when it was resolved late, is overdue, was cancelled or missed; NULL while still due.
CREATE VIEW pm_compliance AS
SELECT o.site_id, o.schedule_id, s.checklist, s.trade, o.source, o.occurrence, o.due_at,
       o.opened_at, o.work_order_id, o.missed, w.state, w.assignee, w.resolved_at,
       CASE
           WHEN w.resolved_at IS NOT NULL THEN w.resolved_at <= o.due_at
           WHEN o.missed OR w.id IS NULL OR w.state = 'cancelled' THEN false
           WHEN now() > o.due_at THEN false
           ELSE NULL
       END AS on_time
FROM pm_occurrences o
LEFT JOIN pm_schedules s ON s.site_id = o.site_id AND s.id = o.schedule_id
LEFT JOIN work_orders w ON w.id = o.work_order_id;
