"""The site registry in the database: sites, devices and points from the loaded site file,
upserted at service start so that telemetry rows can use small integer ids.

``load_ids`` returns the name -> id maps a consumer keeps in memory."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from facility.site import Site


@dataclass(frozen=True, slots=True)
class Registry:
    """Ids of the registered devices and points: device name -> id, (device, point) -> id."""

    devices: dict[str, int]
    points: dict[tuple[str, str], int]
    point_types: dict[int, str]


def sync_site(conn: psycopg.Connection, site: Site) -> None:
    """Upsert the site, its devices and their points (never deletes history)."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO sites (id, name) VALUES (%s, %s)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
            (site.id, site.config.name),
        )
        for dev in site.devices.values():
            row = conn.execute(
                "INSERT INTO devices (name, site_id, building, gateway, type, profile, protocol,"
                " display_name) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET site_id = EXCLUDED.site_id,"
                " building = EXCLUDED.building, gateway = EXCLUDED.gateway, type = EXCLUDED.type,"
                " profile = EXCLUDED.profile, protocol = EXCLUDED.protocol,"
                " display_name = EXCLUDED.display_name RETURNING id",
                (dev.id, site.id, dev.building, dev.gateway, dev.type, dev.profile.profile,
                 dev.profile.protocol, dev.config.name),
            ).fetchone()
            assert row is not None
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO points (device_id, name, type, unit, tags)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (device_id, name) DO UPDATE"
                    " SET type = EXCLUDED.type, unit = EXCLUDED.unit, tags = EXCLUDED.tags",
                    [(row[0], p.name, str(p.type), p.unit, list(p.tags))
                     for p in dev.profile.points],
                )


def load_ids(conn: psycopg.Connection, site_id: str | None = None) -> Registry:
    sql = (
        "SELECT d.name, d.id, p.name, p.id, p.type FROM devices d"
        " LEFT JOIN points p ON p.device_id = d.id"
    )
    rows = conn.execute(
        sql + (" WHERE d.site_id = %s" if site_id else ""), (site_id,) if site_id else ()
    ).fetchall()
    devices: dict[str, int] = {}
    points: dict[tuple[str, str], int] = {}
    types: dict[int, str] = {}
    for dname, did, pname, pid, ptype in rows:
        devices[dname] = did
        if pid is not None:
            points[(dname, pname)] = pid
            types[pid] = ptype
    return Registry(devices=devices, points=points, point_types=types)
