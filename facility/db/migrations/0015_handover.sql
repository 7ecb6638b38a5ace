-- Issue 23: the duty room's shift handover log (交接班记录). The outgoing shift writes it (the
-- open alarms and open orders at that moment are kept with it, and its notes); the next shift
-- acknowledges it. Both are kept and searchable. site_id NULL: the whole monitoring centre
-- (written by someone who sees every site), else one site.
CREATE TABLE shift_handovers (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id          text,
    shift            text NOT NULL DEFAULT '',
    written_by       text NOT NULL,
    written_at       timestamptz NOT NULL DEFAULT now(),
    open_alarms      jsonb NOT NULL DEFAULT '[]',
    open_orders      jsonb NOT NULL DEFAULT '[]',
    notes            text NOT NULL DEFAULT '',
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    ack_note         text NOT NULL DEFAULT '',
    CHECK ((acknowledged_by IS NULL) = (acknowledged_at IS NULL))
);
CREATE INDEX shift_handovers_written ON shift_handovers (written_at DESC);
CREATE INDEX shift_handovers_site ON shift_handovers (site_id, written_at DESC);
