-- Alarms (ISA-18.2 lifecycle), procedures, work orders with steps and timelines, rule state.

CREATE TABLE procedures (
    id            text PRIMARY KEY,              -- e.g. elevator_entrapment
    title         text NOT NULL,                 -- Chinese title, e.g. 电梯困人处理流程
    title_en      text NOT NULL DEFAULT '',
    trade         text NOT NULL,                 -- elevator, electrical, plumbing, fire, general
    priority      text NOT NULL,                 -- critical, high, medium, low
    body          jsonb NOT NULL,                -- the whole validated procedure document
    version       integer NOT NULL DEFAULT 1,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);

-- state: unack (active, unacknowledged), ack (active, acknowledged),
--        rtn_unack (returned to normal, unacknowledged), normal (closed).
CREATE TABLE alarms (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id       text NOT NULL,
    device_id     smallint REFERENCES devices(id),
    source        text NOT NULL,                 -- device name or gateway id that raised it
    alarm_type    text NOT NULL,                 -- entrapment, fire_alarm, ...
    rule_id       text NOT NULL,
    priority      text NOT NULL,
    state         text NOT NULL CHECK (state IN ('unack', 'ack', 'rtn_unack', 'normal')),
    active        boolean NOT NULL,
    suppressed    boolean NOT NULL DEFAULT false,
    shelved_until timestamptz,
    message       text NOT NULL DEFAULT '',
    detail        jsonb NOT NULL DEFAULT '{}',
    raised_at     timestamptz NOT NULL,
    acked_at      timestamptz,
    acked_by      text,
    cleared_at    timestamptz,
    closed_at     timestamptz,
    repeat_count  integer NOT NULL DEFAULT 0
);
-- One alarm per source and type that is not yet back to normal: a repeat updates it.
CREATE UNIQUE INDEX alarms_one_open ON alarms (source, alarm_type) WHERE state <> 'normal';
CREATE INDEX alarms_raised ON alarms (raised_at DESC);

CREATE TABLE alarm_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id      bigint NOT NULL REFERENCES alarms(id) ON DELETE CASCADE,
    time          timestamptz NOT NULL,
    event         text NOT NULL,                 -- raised, acknowledged, cleared, closed, repeat
    actor         text NOT NULL,                 -- 'rules' or a username
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX alarm_events_alarm ON alarm_events (alarm_id, time);

-- state: open, assigned, accepted, on_site, resolved, closed, cancelled.
CREATE TABLE work_orders (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id       text NOT NULL,
    device_id     smallint REFERENCES devices(id),
    source        text NOT NULL,                 -- device name / gateway id / 'desk'
    fault         text NOT NULL,                 -- alarm type or request category
    origin        text NOT NULL CHECK (origin IN ('alarm', 'request', 'schedule')),
    alarm_id      bigint REFERENCES alarms(id),
    procedure_id  text REFERENCES procedures(id),
    title         text NOT NULL,
    description   text NOT NULL DEFAULT '',
    trade         text NOT NULL,
    priority      text NOT NULL,
    state         text NOT NULL CHECK (state IN
                    ('open', 'assigned', 'accepted', 'on_site', 'resolved', 'closed', 'cancelled')),
    assignee      text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    due_at        timestamptz,
    resolved_at   timestamptz,
    closed_at     timestamptz
);
-- One open order per source and fault (alarm-opened orders); repeats link to it.
CREATE UNIQUE INDEX work_orders_one_open ON work_orders (source, fault)
    WHERE origin = 'alarm' AND state NOT IN ('resolved', 'closed', 'cancelled');
CREATE INDEX work_orders_state ON work_orders (state, created_at DESC);

CREATE TABLE work_order_steps (
    work_order_id bigint NOT NULL REFERENCES work_orders(id) ON DELETE CASCADE,
    seq           integer NOT NULL,
    role          text NOT NULL,
    action        text NOT NULL,                 -- Chinese text of the procedure
    action_en     text NOT NULL DEFAULT '',
    time_limit_s  integer,
    required      boolean NOT NULL DEFAULT true,
    done_at       timestamptz,
    done_by       text,
    note          text NOT NULL DEFAULT '',
    PRIMARY KEY (work_order_id, seq)
);

CREATE TABLE work_order_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id bigint NOT NULL REFERENCES work_orders(id) ON DELETE CASCADE,
    time          timestamptz NOT NULL,
    event         text NOT NULL,                 -- created, assigned, accepted, ..., linked_repeat
    actor         text NOT NULL,
    from_state    text,
    to_state      text,
    detail        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX work_order_events_wo ON work_order_events (work_order_id, time);

-- Rule timers and latched states, so a restart resumes on-delays that were running.
CREATE TABLE rule_state (
    source        text NOT NULL,
    rule_id       text NOT NULL,
    state         jsonb NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (source, rule_id)
);
