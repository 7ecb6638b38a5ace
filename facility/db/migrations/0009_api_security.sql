-- API hardening (issue 13): sign-in throttling and the audit log.
--
-- sign_in_throttle: failed sign-ins counted per attempted user name and per client address,
-- shared by every API process and kept across restarts. An attempt is charged here before the
-- password is verified (api.sign_in_throttle), so parallel guesses cannot slip past a delay;
-- `delayed_until` is the exponential delay before the next attempt, `locked_until` the lock.
CREATE TABLE sign_in_throttle (
    kind            text NOT NULL CHECK (kind IN ('user', 'address')),
    key             text NOT NULL,
    failures        integer NOT NULL DEFAULT 0,
    last_failure_at timestamptz NOT NULL DEFAULT now(),
    delayed_until   timestamptz,
    locked_until    timestamptz,
    PRIMARY KEY (kind, key)
);
CREATE INDEX sign_in_throttle_last_failure ON sign_in_throttle (last_failure_at);

-- audit_log: user administration and sign-ins, readable by admins (GET /api/v1/audit).
-- actor: who acted (NULL for an attempted sign-in, whose user name is in target);
-- action: sign_in, sign_out, user.create, user.role, user.password, user.deactivate, ...;
-- outcome: success or failure, with a reason for a failure (bad_credentials, delayed, locked).
CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text,
    action   text NOT NULL,
    target   text,
    outcome  text NOT NULL CHECK (outcome IN ('success', 'failure')),
    reason   text,
    address  text,
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at DESC);
CREATE INDEX audit_log_target ON audit_log (target, at DESC);
