-- Storage layout for plain PostgreSQL (the embedded default): telemetry as native range
-- partitions per UTC day (telemetry_pYYYYMMDD), created ahead and on demand by ingest and
-- dropped past retention by ingest's scheduled job; BRIN on time; rollup tables at 1 minute
-- and 1 hour kept by ingest from the minute buckets its batches mark dirty (in the batch's
-- transaction, so a crash cannot lose a mark). Where the TimescaleDB extension is available
-- ingest replaces this layout, while telemetry is still empty, by
-- facility/db/timescale/layout.sql (hypertable, compression, retention, continuous
-- aggregates with the same names and columns), and records it in storage_layout.

-- The table is recreated partitioned; rows of an earlier install are carried over.
ALTER TABLE telemetry RENAME TO telemetry_0001;
ALTER TABLE telemetry_0001 RENAME CONSTRAINT telemetry_pkey TO telemetry_0001_pkey;
ALTER INDEX telemetry_time_brin RENAME TO telemetry_0001_time_brin;

-- quality: 0 good, 1 bad, 2 stale. Booleans are stored as 0/1 in value. The primary key
-- includes the partition key, so (point, time) is unique across partitions: a redelivered
-- message is stored once.
CREATE TABLE telemetry (
    time        timestamptz NOT NULL,
    point_id    integer NOT NULL,
    value       double precision,
    value_text  text,
    quality     smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (point_id, time)
) PARTITION BY RANGE (time);
CREATE INDEX telemetry_time_brin ON telemetry USING brin (time);

-- One row: which layout this database has ('partitions' or 'timescaledb').
CREATE TABLE storage_layout (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    layout      text NOT NULL CHECK (layout IN ('partitions', 'timescaledb')),
    changed_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO storage_layout (layout) VALUES ('partitions');

-- The partition of one UTC day; true if it was created now. Concurrent callers take turns.
CREATE FUNCTION telemetry_ensure_partition(day date) RETURNS boolean
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    part text := format('telemetry_p%s', to_char(day, 'YYYYMMDD'));
    lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(7411005);
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                   part, lo, lo + interval '1 day');
    RETURN true;
EXCEPTION WHEN duplicate_table THEN
    RETURN false;  -- made meanwhile by another session
END $$;

-- Drop the day partitions that end at or before ``older_than``; returns their names.
CREATE FUNCTION telemetry_drop_partitions(older_than timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    part text;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'telemetry'::regclass AND c.relname ~ '^telemetry_p[0-9]{8}$'
        ORDER BY c.relname
    LOOP
        IF (to_date(substr(part, 12), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC'
           <= older_than THEN
            EXECUTE format('DROP TABLE %I', part);
            RETURN NEXT part;
        END IF;
    END LOOP;
END $$;

SELECT telemetry_ensure_partition(d)
FROM (SELECT DISTINCT (time AT TIME ZONE 'UTC')::date AS d FROM telemetry_0001) days;
INSERT INTO telemetry (time, point_id, value, value_text, quality)
    SELECT time, point_id, value, value_text, quality FROM telemetry_0001;
DROP TABLE telemetry_0001;

-- Rollups of numeric values (rows with a NULL value, text values, are left out):
-- count of values, min, max, avg, and the last value with its time.
CREATE TABLE telemetry_1m (
    point_id    integer NOT NULL,
    bucket      timestamptz NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    avg         double precision NOT NULL,
    count       integer NOT NULL,
    last        double precision NOT NULL,
    last_time   timestamptz NOT NULL,
    PRIMARY KEY (point_id, bucket)
);
CREATE INDEX telemetry_1m_bucket ON telemetry_1m USING brin (bucket);
CREATE TABLE telemetry_1h (LIKE telemetry_1m INCLUDING ALL);

-- Minute buckets that received rows since they were last rolled up.
CREATE TABLE telemetry_rollup_dirty (
    bucket      timestamptz PRIMARY KEY
);
INSERT INTO telemetry_rollup_dirty (bucket)
    SELECT DISTINCT date_trunc('minute', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
    FROM telemetry;

-- Recompute the rollups of minutes [lo, hi) (both minute-aligned) and of the hours that
-- hold them, from the stored rows: idempotent, and right for late (historical) rows too.
CREATE FUNCTION telemetry_rollup(lo timestamptz, hi timestamptz) RETURNS void
LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
    hlo timestamptz := date_trunc('hour', lo);
    hhi timestamptz := date_trunc('hour', hi - interval '1 microsecond') + interval '1 hour';
BEGIN
    DELETE FROM telemetry_1m WHERE bucket >= lo AND bucket < hi;
    INSERT INTO telemetry_1m (point_id, bucket, min, max, avg, count, last, last_time)
        SELECT point_id, date_trunc('minute', time), min(value), max(value), avg(value),
               count(*), (array_agg(value ORDER BY time DESC))[1], max(time)
        FROM telemetry WHERE time >= lo AND time < hi AND value IS NOT NULL
        GROUP BY 1, 2;
    DELETE FROM telemetry_1h WHERE bucket >= hlo AND bucket < hhi;
    INSERT INTO telemetry_1h (point_id, bucket, min, max, avg, count, last, last_time)
        SELECT point_id, date_trunc('hour', bucket), min(min), max(max),
               sum(avg * count) / sum(count), sum(count),
               (array_agg(last ORDER BY last_time DESC))[1], max(last_time)
        FROM telemetry_1m WHERE bucket >= hlo AND bucket < hhi
        GROUP BY 1, 2;
END $$;
