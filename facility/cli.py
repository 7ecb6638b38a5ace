"""The `facility` command: one subcommand per service plus `demo` (everything at once) and
`db migrate`. Settings come from FACILITY_* environment variables; flags override them.
Services are imported lazily so that each process loads only its own package."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import psycopg

from facility.config_errors import ConfigError
from facility.runner import run_service, setup_logging
from facility.settings import CommonSettings

log = logging.getLogger("facility.cli")


def _common(p: argparse.ArgumentParser, *, database: bool = True, mqtt: bool = True) -> None:
    p.add_argument("--site", type=Path, help="site file (FACILITY_SITE; default sites/demo.yaml)")
    if database:
        p.add_argument("--database-url", help="postgresql://... (FACILITY_DATABASE_URL)")
    if mqtt:
        p.add_argument("--mqtt-url", help="mqtt://host:port (FACILITY_MQTT_URL)")
        p.add_argument("--mqtt-protocol", choices=["5", "3.1.1"],
                       help="MQTT protocol version (FACILITY_MQTT_PROTOCOL; default 5)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facility", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole platform with its simulators")
    _common(p)
    p.add_argument("--scenario", type=Path, help="scenario file of timed faults")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="dashboard and API port")
    p.add_argument("--state-dir", type=Path, default=Path(".facility"),
                   help="where the embedded database and broker keep their data")
    p.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto",
                   help="embedded broker when FACILITY_MQTT_URL is not set (auto: mosquitto "
                        "if installed, else amqtt)")

    p = sub.add_parser("simulate", help="serve simulated devices over Modbus TCP and BACnet/IP")
    _common(p, database=False, mqtt=False)
    p.add_argument("--scenario", type=Path)
    p.add_argument("--device", action="append", dest="devices", help="only these devices")

    p = sub.add_parser("gateway", help="poll one gateway's devices and publish to MQTT")
    _common(p, database=False)
    p.add_argument("--gateway", required=True, help="gateway id from the site file")

    p = sub.add_parser("ingest", help="store MQTT telemetry in PostgreSQL")
    _common(p)
    p.add_argument("--share-group", help="MQTT 5 shared-subscription group (default: ingest)")

    p = sub.add_parser("rules", help="evaluate rules, raise alarms, open work orders")
    _common(p)
    p.add_argument("--procedures", type=Path, default=Path("procedures"))
    p.add_argument("--share-group", default="",
                   help="MQTT 5 shared-subscription group (default: none; rule state is "
                        "per device, so one rules process per site until partitioning lands)")

    p = sub.add_parser("api", help="serve the API and the web pages")
    _common(p, mqtt=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    p = sub.add_parser("db", help="database administration")
    dbsub = p.add_subparsers(dest="db_command", required=True)
    m = dbsub.add_parser("migrate", help="apply the schema migrations")
    m.add_argument("--database-url")
    m.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def settings_from(args: argparse.Namespace) -> CommonSettings:
    overrides: dict[str, Any] = {}
    for name in ("site", "database_url", "mqtt_url", "mqtt_protocol", "log_level"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return CommonSettings(**overrides)


def _share_group(args: argparse.Namespace, settings: CommonSettings, default: str) -> str:
    if args.share_group is not None:
        return str(args.share_group)
    return default if settings.mqtt_protocol == "5" else ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"facility: bad configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.command, settings.log_level)
    from facility.db.migrate import SchemaBehind

    try:
        return _dispatch(args, settings)
    except ConfigError as exc:
        log.error("bad configuration:\n%s", exc)
        return 2
    except SchemaBehind as exc:
        log.error("%s", exc)
        return 2
    except (OSError, psycopg.OperationalError) as exc:
        log.error("cannot start %s: %s", args.command, exc)
        return 1


def _dispatch(args: argparse.Namespace, settings: CommonSettings) -> int:
    from facility.site import load_site

    if args.command == "db":
        from facility.db.migrate import migrate

        applied = migrate(settings.require_database())
        log.info("schema up to date (%d migrations applied now)", len(applied))
        return 0
    if args.command == "demo":
        from facility.demo import run_demo

        return run_demo(args, settings)
    site = load_site(settings.site)
    if args.command == "simulate":
        from facility.scenario import load_scenario
        from simulators.runner import run_simulators

        scenario = load_scenario(args.scenario, site) if args.scenario else None
        devices = set(args.devices) if args.devices else None
        return run_service(run_simulators(site, scenario, devices=devices))
    if args.command == "gateway":
        from gateway.service import run_gateway

        if args.gateway not in {g.id for g in site.config.gateways}:
            log.error("gateway %s is not defined in %s", args.gateway, settings.site)
            return 2
        return run_service(run_gateway(site, args.gateway, settings.mqtt_url,
                                       mqtt_protocol=settings.mqtt_protocol))
    if args.command == "ingest":
        from ingest.service import run_ingest

        return run_service(run_ingest(
            site, settings.require_database(), settings.mqtt_url,
            mqtt_protocol=settings.mqtt_protocol,
            share_group=_share_group(args, settings, "ingest")))
    if args.command == "rules":
        from rules.service import run_rules

        return run_service(run_rules(
            site, settings.require_database(), settings.mqtt_url,
            procedures_dir=args.procedures, mqtt_protocol=settings.mqtt_protocol,
            share_group=args.share_group))
    if args.command == "api":
        from api.service import run_api

        run_api(settings.require_database(), args.host, args.port, site=site)
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
