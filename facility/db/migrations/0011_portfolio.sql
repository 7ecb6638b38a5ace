-- A monitoring centre's portfolio (hundreds of estates, 1,000 buildings, 10,000 devices): the
-- board and the device page read one building, one device or the open lists at a time, and
-- these indexes keep each of those reads proportional to what the page shows, not to the
-- estate. Building names and the points' display names and enum labels are stored with the
-- registry (facility.db.registry.sync_site), so the API can name every site's buildings and
-- points, not only those of the site file it was started with.

CREATE TABLE IF NOT EXISTS buildings (
    site_id     text NOT NULL REFERENCES sites(id),
    id          text NOT NULL,
    name        text NOT NULL DEFAULT '',
    PRIMARY KEY (site_id, id)
);

-- Display name of a point in Chinese and English, and the labels of its enumerated values:
-- {"3": {"zh": "安全回路动作", "en": "safety circuit"}}.
ALTER TABLE points ADD COLUMN IF NOT EXISTS label text NOT NULL DEFAULT '';
ALTER TABLE points ADD COLUMN IF NOT EXISTS label_en text NOT NULL DEFAULT '';
ALTER TABLE points ADD COLUMN IF NOT EXISTS enum_labels jsonb NOT NULL DEFAULT '{}';

-- The devices of one building (the board opens one building at a time).
CREATE INDEX IF NOT EXISTS devices_place ON devices (site_id, building, name);

-- A device's alarms and work orders, newest first (the device page).
CREATE INDEX IF NOT EXISTS alarms_device ON alarms (device_id, raised_at DESC);
CREATE INDEX IF NOT EXISTS work_orders_device ON work_orders (device_id, created_at DESC);

-- Open orders: faults and requests newest first; planned maintenance due first.
CREATE INDEX IF NOT EXISTS work_orders_open ON work_orders (created_at DESC)
    WHERE state IN ('open', 'assigned', 'accepted', 'on_site');
CREATE INDEX IF NOT EXISTS work_orders_open_due ON work_orders (due_at, id)
    WHERE origin = 'schedule' AND state IN ('open', 'assigned', 'accepted', 'on_site');
