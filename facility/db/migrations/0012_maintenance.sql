-- Maintenance depth (issue 16): the asset ledger (设施设备台账) per device, parts used on work
-- orders (cost), and notices to residents drafted from outage alarms.

-- One row per device (by its configuration id, so a ledger can be imported before the device
-- has reported); edited by managers and admins, every change in audit_log.
CREATE TABLE device_assets (
    device            text PRIMARY KEY,
    model             text NOT NULL DEFAULT '',
    manufacturer      text NOT NULL DEFAULT '',
    serial_number     text NOT NULL DEFAULT '',
    registration_code text NOT NULL DEFAULT '',   -- an elevator's 注册代码
    installed_on      date,
    warranty_until    date,
    contractor        text NOT NULL DEFAULT '',   -- maintenance contractor (维保单位)
    contractor_phone  text NOT NULL DEFAULT '',
    inspection_due    date,                       -- statutory inspection (定期检验) due
    notes             text NOT NULL DEFAULT '',
    updated_at        timestamptz NOT NULL DEFAULT now(),
    updated_by        text
);
CREATE INDEX device_assets_inspection_due ON device_assets (inspection_due);

-- Parts used on a work order: the device's maintenance cost.
CREATE TABLE work_order_parts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id bigint NOT NULL REFERENCES work_orders(id) ON DELETE CASCADE,
    part          text NOT NULL,
    quantity      numeric(10, 2) NOT NULL CHECK (quantity > 0),
    unit_cost     numeric(12, 2) NOT NULL CHECK (unit_cost >= 0),   -- CNY
    added_by      text NOT NULL,
    added_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX work_order_parts_order ON work_order_parts (work_order_id);

-- Notices to residents (停电/停水/停气 通知): drafted from an outage alarm, edited and
-- published by the duty room, shown on the site's public page while published, closed when
-- the alarm's work order is resolved. One notice per alarm.
CREATE TABLE resident_notices (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id           text NOT NULL,
    building          text NOT NULL DEFAULT '',
    kind              text NOT NULL CHECK (kind IN ('power', 'water', 'gas', 'other')),
    alarm_id          bigint UNIQUE REFERENCES alarms(id),
    title             text NOT NULL,
    body              text NOT NULL DEFAULT '',
    since             timestamptz NOT NULL,
    expected_restore  timestamptz,
    state             text NOT NULL CHECK (state IN ('draft', 'published', 'closed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    published_at      timestamptz,
    published_by      text,
    closed_at         timestamptz,
    updated_by        text
);
CREATE INDEX resident_notices_site_state ON resident_notices (site_id, state);

-- An outage alarm drafts its notice, whichever service raised it (a trigger, so the rules
-- service needs no change): power_outage, water_outage, gas_outage, in the device's building.
CREATE FUNCTION draft_resident_notice() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k text;
    what_zh text;
    what_en text;
    bldg text := '';
BEGIN
    k := CASE NEW.alarm_type WHEN 'power_outage' THEN 'power' WHEN 'water_outage' THEN 'water'
                             WHEN 'gas_outage' THEN 'gas' END;
    IF k IS NULL OR NEW.cleared_at IS NOT NULL THEN  -- not an outage, or over already
        RETURN NEW;
    END IF;
    what_zh := CASE k WHEN 'power' THEN '停电' WHEN 'water' THEN '停水' ELSE '停气' END;
    what_en := CASE k WHEN 'power' THEN 'Power outage' WHEN 'water' THEN 'Water outage'
                      ELSE 'Gas outage' END;
    IF NEW.device_id IS NOT NULL THEN
        SELECT building INTO bldg FROM devices WHERE id = NEW.device_id;
    END IF;
    INSERT INTO resident_notices (site_id, building, kind, alarm_id, title, body, since, state)
    VALUES (NEW.site_id, coalesce(bldg, ''), k, NEW.id,
            what_zh || '通知 ' || what_en || ' notice',
            '尊敬的住户：因突发故障，本楼自 '
              || to_char(NEW.raised_at AT TIME ZONE 'Asia/Shanghai', 'MM-DD HH24:MI')
              || ' 起' || what_zh || '，工程人员正在全力抢修，恢复时间另行通知。给您带来不便，敬请谅解。'
              || E'\n' || 'Dear residents: ' || lower(what_en) || ' in this building since '
              || to_char(NEW.raised_at AT TIME ZONE 'Asia/Shanghai', 'MM-DD HH24:MI')
              || '. Our engineers are working on it; we will tell you when it is expected back.',
            NEW.raised_at, 'draft')
    ON CONFLICT (alarm_id) DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER alarms_draft_notice AFTER INSERT ON alarms
    FOR EACH ROW EXECUTE FUNCTION draft_resident_notice();

-- The notice closes when its alarm's work order is resolved (or closed, or cancelled), or,
-- for an alarm with no order (grouped under another), when the alarm clears.
CREATE FUNCTION close_resident_notice_for_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.alarm_id IS NOT NULL AND NEW.state IN ('resolved', 'closed', 'cancelled')
       AND OLD.state NOT IN ('resolved', 'closed', 'cancelled') THEN
        UPDATE resident_notices SET state = 'closed', closed_at = now()
        WHERE alarm_id IN (SELECT NEW.alarm_id UNION
                           SELECT id FROM alarms WHERE work_order_id = NEW.id)
          AND state <> 'closed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER work_orders_close_notice AFTER UPDATE OF state ON work_orders
    FOR EACH ROW EXECUTE FUNCTION close_resident_notice_for_order();

CREATE FUNCTION close_resident_notice_for_alarm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.cleared_at IS NOT NULL AND OLD.cleared_at IS NULL AND NEW.work_order_id IS NULL THEN
        UPDATE resident_notices SET state = 'closed', closed_at = now()
        WHERE alarm_id = NEW.id AND state <> 'closed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER alarms_close_notice AFTER UPDATE OF cleared_at ON alarms
    FOR EACH ROW EXECUTE FUNCTION close_resident_notice_for_alarm();

-- Rosters people can change: the dispatch file seeds dispatch_rosters/dispatch_shifts; a
-- roster edited in the API (edited_at set) is kept as edited when the rules service restarts
-- with the file. Shift swaps: for a time window, the substitute takes the original's place
-- in the roster's shifts. The rules service reloads both every few seconds.
ALTER TABLE dispatch_rosters ADD COLUMN edited_by text, ADD COLUMN edited_at timestamptz;

CREATE TABLE roster_swaps (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id       text NOT NULL,
    roster        text NOT NULL,
    original      text NOT NULL,
    substitute    text NOT NULL CHECK (substitute <> original),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL CHECK (ends_at > starts_at),
    reason        text NOT NULL DEFAULT '',
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    cancelled_by  text,
    cancelled_at  timestamptz
);
CREATE INDEX roster_swaps_active ON roster_swaps (site_id, ends_at) WHERE cancelled_at IS NULL;

-- Photos and attachments on work orders (before / after a repair), kept in the database with
-- the order (durable and backed up with it, transactional with its record) with a SHA-256
-- checksum checked again on every read. Served only to a signed-in user who may read orders.
CREATE TABLE work_order_attachments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id bigint NOT NULL REFERENCES work_orders(id) ON DELETE CASCADE,
    step_seq      integer,                         -- the checklist step, or NULL: the order
    stage         text NOT NULL CHECK (stage IN ('before', 'after', 'other')),
    filename      text NOT NULL,
    content_type  text NOT NULL,
    size_bytes    integer NOT NULL CHECK (size_bytes > 0),
    sha256        text NOT NULL,
    content       bytea NOT NULL,
    uploaded_by   text NOT NULL,
    uploaded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX work_order_attachments_order ON work_order_attachments (work_order_id, id);

-- The inspection due date for which a work order was opened (once per due date).
ALTER TABLE device_assets ADD COLUMN inspection_order_for date;
