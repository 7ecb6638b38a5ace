-- Issue 23: the technician's page queues what is done offline and sends it when the network
-- returns, each request with an Idempotency-Key; the API keeps the key and the first answer, so
-- a repeat (a retry after a lost answer) is answered with that first result and done at most
-- once (api.idempotency). status NULL: the first request is still being handled.
CREATE TABLE idempotent_requests (
    user_id       integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key           text NOT NULL,
    method        text NOT NULL,
    path          text NOT NULL,
    status        integer,
    content_type  text NOT NULL DEFAULT 'application/json',
    body          bytea NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotent_requests_created ON idempotent_requests (created_at);
