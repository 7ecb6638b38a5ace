-- Core schema: device and point dictionaries, telemetry, latest values, statuses,
-- dead letters. Applied by `facility db migrate`; every statement is idempotent-safe
-- because the migration runner applies each file once inside a transaction.

CREATE TABLE sites (
    id          text PRIMARY KEY,
    name        text NOT NULL DEFAULT ''
);

CREATE TABLE devices (
    id          smallint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,            -- configuration id, e.g. a-elevator-1
    site_id     text NOT NULL REFERENCES sites(id),
    building    text NOT NULL,
    gateway     text NOT NULL,
    type        text NOT NULL,
    profile     text NOT NULL,
    protocol    text NOT NULL,
    display_name text NOT NULL DEFAULT ''
);

CREATE TABLE points (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   smallint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    name        text NOT NULL,
    type        text NOT NULL,
    unit        text NOT NULL DEFAULT '',
    tags        text[] NOT NULL DEFAULT '{}',
    UNIQUE (device_id, name)
);

-- Narrow telemetry table; idempotent on (point, time) so a redelivered message is stored once.
-- quality: 0 good, 1 bad, 2 stale. Booleans are stored as 0/1 in value.
CREATE TABLE telemetry (
    time        timestamptz NOT NULL,
    point_id    integer NOT NULL,
    value       double precision,
    value_text  text,
    quality     smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (point_id, time)
);
CREATE INDEX telemetry_time_brin ON telemetry USING brin (time);

CREATE TABLE latest_values (
    point_id    integer PRIMARY KEY REFERENCES points(id) ON DELETE CASCADE,
    time        timestamptz NOT NULL,
    value       double precision,
    value_text  text,
    quality     smallint NOT NULL DEFAULT 0
);

CREATE TABLE device_status (
    device_id   smallint PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    state       text NOT NULL CHECK (state IN ('online', 'offline')),
    reason      text NOT NULL DEFAULT '',
    time        timestamptz NOT NULL
);

CREATE TABLE device_status_history (
    device_id   smallint NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    time        timestamptz NOT NULL,
    state       text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    PRIMARY KEY (device_id, time)
);

CREATE TABLE gateway_status (
    site_id     text NOT NULL,
    gateway     text NOT NULL,
    state       text NOT NULL CHECK (state IN ('online', 'offline')),
    session     text NOT NULL,
    time        timestamptz NOT NULL,
    PRIMARY KEY (site_id, gateway)
);

-- Messages refused by a consumer, kept with the reason.
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    consumer    text NOT NULL,
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
