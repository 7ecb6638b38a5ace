-- TimescaleDB layout, applied by ingest at start (ingest/storage.py, prepare_layout)
-- when CREATE EXTENSION timescaledb succeeds, the database is on the 'partitions' layout of
-- migration 0005 and telemetry is still empty. Same table and view names and columns as
-- the plain layout, so facility/db/telemetry_query.py reads both. Placeholders:
-- {chunk_interval}, {retention}, {compress_after} (interval literals, set by ingest).

DROP TABLE telemetry;                -- the empty partitioned table of 0005
DROP TABLE telemetry_1m, telemetry_1h;   -- telemetry_rollup_dirty stays, unused and empty

CREATE TABLE telemetry (
    time        timestamptz NOT NULL,
    point_id    integer NOT NULL,
    value       double precision,
    value_text  text,
    quality     smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (point_id, time)
);
SELECT create_hypertable('telemetry', 'time', chunk_time_interval => INTERVAL '{chunk_interval}');
ALTER TABLE telemetry SET (timescaledb.compress,
                           timescaledb.compress_segmentby = 'point_id',
                           timescaledb.compress_orderby = 'time');
SELECT add_compression_policy('telemetry', INTERVAL '{compress_after}');
SELECT add_retention_policy('telemetry', INTERVAL '{retention}');

CREATE MATERIALIZED VIEW telemetry_1m
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT point_id, time_bucket(INTERVAL '1 minute', time) AS bucket,
           min(value) AS min, max(value) AS max, avg(value) AS avg,
           count(*)::integer AS count, last(value, time) AS last, max(time) AS last_time
    FROM telemetry WHERE value IS NOT NULL GROUP BY point_id, bucket WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_1m', start_offset => INTERVAL '1 day',
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute');

CREATE MATERIALIZED VIEW telemetry_1h
    WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT point_id, time_bucket(INTERVAL '1 hour', time) AS bucket,
           min(value) AS min, max(value) AS max, avg(value) AS avg,
           count(*)::integer AS count, last(value, time) AS last, max(time) AS last_time
    FROM telemetry WHERE value IS NOT NULL GROUP BY point_id, bucket WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_1h', start_offset => INTERVAL '7 days',
    end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes');

UPDATE storage_layout SET layout = 'timescaledb', changed_at = now();
