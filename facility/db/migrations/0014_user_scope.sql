-- Issue 23: each user sees their own estates, in their own language.
-- A user sees every site (all_sites, the monitoring centre: the default, and what every user
-- had before this migration) or only the sites and buildings listed in user_scopes
-- (building '' = the whole site). The API filters every read by it (facility.scope).
ALTER TABLE users ADD COLUMN all_sites boolean NOT NULL DEFAULT true;
ALTER TABLE users ADD COLUMN language text NOT NULL DEFAULT 'zh-CN'
    CHECK (language IN ('zh-CN', 'en'));

CREATE TABLE user_scopes (
    user_id     integer NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    site_id     text NOT NULL,
    building    text NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, site_id, building)
);
