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
