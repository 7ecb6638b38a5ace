"""The `facility` command: one subcommand per service plus `demo` (everything at once),
`db migrate`, `broker-config` and `centre-config`. Settings come from FACILITY_* environment
variables; flags override them (the MQTT login and TLS files come from the environment only).
Services are imported lazily so that each process loads only its own package."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import psycopg

from facility.config_errors import ConfigError
from facility.db.active_lock import DEFAULT_BROKER_GRACE_S, LockTiming
from facility.runner import StoppedBeforeStart, run_service, setup_logging, stop_before_start
from facility.settings import CommonSettings, check_mqtt_endpoint
from facility.stopping import Stopping
from stack.embedded.broker import BrokerError, require_mosquitto

log = logging.getLogger("stack.cli")


def _common(p: argparse.ArgumentParser, *, database: bool = True, mqtt: bool = True) -> None:
    p.add_argument("--site", type=Path, help="site file (FACILITY_SITE; default sites/demo.yaml)")
    if database:
        p.add_argument("--database-url", help="postgresql://... (FACILITY_DATABASE_URL)")
    if mqtt:
        p.add_argument("--mqtt-url", help="mqtt://host:port (FACILITY_MQTT_URL)")
        p.add_argument("--mqtt-protocol", choices=["5", "3.1.1"],
                       help="MQTT protocol version (FACILITY_MQTT_PROTOCOL; default 5)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _standby(p: argparse.ArgumentParser) -> None:
    p.add_argument("--standby", action="store_true",
                   help="high availability: consume only while holding this session's lock "
                        "in the database, stand by otherwise; run two or more instances with "
                        "the same options on different machines (default: off, one instance)")
    p.add_argument("--lock-poll-s", type=float, default=0.5, metavar="S",
                   help="with --standby: how often a standby tries the lock and the active "
                        "checks it (0.5)")
    p.add_argument("--broker-grace-s", type=float, default=DEFAULT_BROKER_GRACE_S,
                   metavar="S",
                   help="with --standby: an active instance with no MQTT broker connection "
                        "this long hands over to a standby, then stands aside at least as "
                        "long and until a broker node answers; keep it above a broker node "
                        "failover (15)")


def lock_timing(args: argparse.Namespace) -> LockTiming | None:
    """The --standby options; None without --standby (ValueError for bad intervals)."""
    if not args.standby:
        return None
    return LockTiming(poll_s=args.lock_poll_s, check_s=args.lock_poll_s,
                      broker_grace_s=args.broker_grace_s)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facility", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the whole platform with its simulators")
    _common(p)
    p.add_argument("--scenario", type=Path,
                   help="scenario file: timed faults and protocol misbehaviour")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="dashboard and API port")
    p.add_argument("--state-dir", type=Path, default=Path(".facility"),
                   help="where the embedded database and broker keep their data")
    p.add_argument("--broker", choices=["auto", "mosquitto", "amqtt"], default="auto",
                   help="embedded broker when FACILITY_MQTT_URL is not set: mosquitto with "
                        "TLS, logins and an ACL (amqtt is no longer supported)")

    p = sub.add_parser("simulate", help="serve simulated devices over Modbus TCP and BACnet/IP")
    _common(p, database=False, mqtt=False)
    p.add_argument("--scenario", type=Path,
                   help="scenario file: timed faults and protocol misbehaviour")
    p.add_argument("--device", action="append", dest="devices", help="only these devices")
    p.add_argument("--load", type=int, metavar="N",
                   help="load mode: serve N Modbus devices and BACnet panels (no --site)")
    p.add_argument("--write-site", type=Path, metavar="PATH",
                   help="load mode: write the matching site file here once all listen")
    p.add_argument("--bacnet-panels", type=int, default=20, help="load mode (default 20)")
    p.add_argument("--units-per-port", type=int, default=20, help="load mode (default 20)")
    p.add_argument("--base-port", type=int,
                   help="load mode: consecutive ports from here (default: free ones)")
    p.add_argument("--profile", default="load_meter", help="load mode device profile")
    p.add_argument("--gateways", type=int, default=1, help="load mode: gateways in the site")
    p.add_argument("--update-period", type=float, default=5.0, metavar="S",
                   help="load mode: seconds between value updates of one device")

    p = sub.add_parser("gateway", help="poll one gateway's devices and publish to MQTT")
    _common(p, database=False)
    p.add_argument("--gateway", help="gateway id from the site file (required to poll)")
    p.add_argument("--state-dir", type=Path, default=Path(".facility"),
                   help="where the store-and-forward queue lives unless the site names a "
                        "buffer path (default .facility)")
    p.add_argument("--metrics-port", type=int,
                   help="Prometheus metrics on 127.0.0.1:PORT (overrides the site's)")
    gsub = p.add_subparsers(dest="gateway_command")
    d = gsub.add_parser("discover", help="probe BACnet and Modbus addresses; write a draft "
                                         "site file and profiles to edit")
    d.add_argument("--bacnet", action="append", default=[], metavar="HOST:PORT",
                   help="a BACnet/IP device to ask by unicast Who-Is (repeatable)")
    d.add_argument("--who-is", nargs="?", const="", metavar="LOW-HIGH",
                   help="broadcast a Who-Is on the gateway's network (optionally ranged)")
    d.add_argument("--modbus", action="append", default=[], metavar="HOST:PORT[/UNIT]",
                   help="a Modbus TCP device to probe (repeatable); without /UNIT, every "
                        "unit of --units")
    d.add_argument("--site", dest="discover_site", type=Path, metavar="FILE",
                   help="take the gateway's BACnet settings and RTU lines from this site")
    d.add_argument("--gateway", dest="discover_gateway", metavar="ID",
                   help="the gateway of --site (its RTU lines are scanned over --units)")
    d.add_argument("--units", metavar="LOW-HIGH",
                   help="unit ids to scan (RTU lines: default 1-32; TCP hosts: default 1)")
    d.add_argument("--address", dest="bind_address", metavar="A.B.C.D/PREFIX",
                   help="bind BACnet/IP to this address (instead of the site's)")
    d.add_argument("--interface", metavar="NAME", help="bind BACnet/IP to this interface")
    d.add_argument("--bbmd", metavar="HOST[:PORT]",
                   help="register with this BBMD as a foreign device first")
    d.add_argument("--out", type=Path, required=True, help="directory for the draft files")
    d.add_argument("--timeout", type=float, default=2.0, help="seconds per request")

    p = sub.add_parser("ingest", help="store MQTT telemetry in PostgreSQL")
    _common(p)
    p.add_argument("--share-group",
                   help="MQTT 5 shared-subscription group, to split telemetry among several "
                        "ingest processes (default: none, one process with a plain persistent "
                        "subscription; see docs/operations.md on broker restarts)")
    p.add_argument("--instance", default="",
                   help="instance name within the share group (default: the host name); "
                        "each process of a group needs its own")
    p.add_argument("--batch-rows", type=int, default=10_000, help="rows per batch (10000)")
    p.add_argument("--batch-ms", type=int, default=200, help="longest wait to fill a batch")
    p.add_argument("--receive-maximum", type=int, default=20_000,
                   help="MQTT 5 messages in flight to this process, unacknowledged (20000)")
    p.add_argument("--retention-days", type=int, default=90, help="raw telemetry kept (90)")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any port)")
    p.add_argument("--no-seq-check", dest="seq_check", action="store_false",
                   help="do not count sequence gaps (use when several processes share a group)")
    p.add_argument("--no-timescale", dest="timescale", action="store_false",
                   help="stay on plain PostgreSQL partitions even if TimescaleDB is available")
    _standby(p)

    p = sub.add_parser("rules", help="evaluate rules, raise alarms, open work orders")
    _common(p)
    p.add_argument("--procedures", type=Path, default=Path("procedures"))
    p.add_argument("--dispatch", type=Path,
                   help="rosters, channels and maintenance schedules (default: "
                        "<site file>-dispatch.yaml beside the site file, if it exists)")
    p.add_argument("--gateways", type=lambda v: [g for g in v.split(",") if g],
                   help="evaluate only these gateways' devices, comma-separated (default: "
                        "all); run one process per part of a site to scale out")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any port)")
    p.add_argument("--no-dispatch", action="store_true",
                   help="leave rosters, SLA timers, notifications and maintenance to another "
                        "rules process of the site (exactly one should run them)")
    _standby(p)

    p = sub.add_parser("api", help="serve the API and the web pages")
    _common(p, mqtt=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    p = sub.add_parser("broker-config", help="write mosquitto's password file and ACL for "
                                             "site files: one login per service and gateway")
    p.add_argument("--site", action="append", type=Path, required=True, dest="sites",
                   help="site file (repeat for several sites on one broker)")
    p.add_argument("--out", type=Path, required=True,
                   help="directory for passwd, acl and credentials/<user>.password "
                        "(passwords already there are kept)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    p = sub.add_parser("centre-config", help="write every engine's files of a multi-machine "
                                             "centre (etcd, Patroni, HAProxy, ...) per machine")
    p.add_argument("--centre", type=Path, required=True,
                   help="the centre's description (YAML; see docs/operations.md)")
    p.add_argument("--out", type=Path, required=True,
                   help="directory: <out>/<machine>/<engine files>; the description's "
                        "secrets file is made once and kept")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

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


def _share_group(args: argparse.Namespace) -> str:
    """Ingest's shared-subscription group: none unless given (a plain persistent
    subscription keeps its messages across a mosquitto restart; a group's member does not)."""
    return str(args.share_group or "")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"facility: bad configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.command, settings.log_level)
    if args.command in ("gateway", "ingest", "rules", "api", "simulate"):
        stop_before_start()  # a long-running service: a signal while starting is a clean stop
    from facility.db.migrate import SchemaBehind

    try:
        return _dispatch(args, settings)
    except StoppedBeforeStart as exc:
        log.info("received %s while starting: exiting", exc.signal_name)
        return 0
    except ConfigError as exc:
        log.error("bad configuration:\n%s", exc)
        return 2
    except SchemaBehind as exc:
        log.error("%s", exc)
        return 2
    except (OSError, psycopg.OperationalError, BrokerError) as exc:
        log.error("cannot start %s: %s", args.command, exc)
        return 1


def _dispatch(args: argparse.Namespace, settings: CommonSettings) -> int:
    from facility.site import check_gateway_reach, load_site

    if args.command == "db":
        from facility.db.migrate import migrate

        applied = migrate(settings.require_database())
        log.info("schema up to date (%d migrations applied now)", len(applied))
        return 0
    if args.command == "demo":
        from stack.demo import run_demo

        if "mqtt_url" not in settings.model_fields_set:
            require_mosquitto(args.broker)  # before anything starts
        return run_demo(args, settings)
    if args.command == "broker-config":
        return _broker_config(args)
    if args.command == "centre-config":
        return _centre_config(args)
    if args.command == "simulate" and args.load is not None:
        from simulators.load import run_load

        return run_service(run_load(
            args.load, write_site=args.write_site, bacnet_panels=args.bacnet_panels,
            units_per_port=args.units_per_port, base_port=args.base_port,
            profile=args.profile, gateways=args.gateways, update_period_s=args.update_period))
    if args.command == "gateway" and args.gateway_command == "discover":
        from gateway.discover import run_discover
        from gateway.discover_cli import discover_targets

        return run_service(run_discover(args.bacnet, args.modbus, args.out,
                                        timeout_s=args.timeout,
                                        targets=discover_targets(args)))
    site = load_site(settings.site)
    if args.command in ("gateway", "ingest", "rules"):
        try:
            mqtt = settings.mqtt_endpoint()
        except ValueError as exc:  # an empty password file
            log.error("bad configuration: %s", exc)
            return 2
        check_mqtt_endpoint(mqtt)  # TLS files that do not load: OSError
    if args.command == "simulate":
        from simulators.runner import run_simulators
        from simulators.scenario import load_scenario

        scenario = load_scenario(args.scenario, site) if args.scenario else None
        devices = set(args.devices) if args.devices else None
        return run_service(run_simulators(site, scenario, devices=devices))
    if args.command == "gateway":
        from gateway.service import run_gateway

        if args.gateway is None:
            log.error("--gateway ID is required (or: facility gateway discover ...)")
            return 2
        if args.gateway not in {g.id for g in site.config.gateways}:
            log.error("gateway %s is not defined in %s", args.gateway, settings.site)
            return 2
        check_gateway_reach(site, args.gateway)  # ConfigError: exit 2 with the paths
        stopping = Stopping()
        return run_service(run_gateway(site, args.gateway, mqtt,
                                       mqtt_protocol=settings.mqtt_protocol,
                                       state_dir=args.state_dir,
                                       metrics_port=args.metrics_port, stopping=stopping),
                           stopping=stopping)
    if args.command == "ingest":
        from ingest.service import IngestOptions, run_ingest
        from ingest.storage import StorageSettings

        try:
            options = IngestOptions(
                mqtt_protocol=settings.mqtt_protocol, instance=args.instance,
                share_group=_share_group(args),
                batch_rows=args.batch_rows, batch_ms=args.batch_ms,
                receive_maximum=args.receive_maximum, seq_check=args.seq_check,
                metrics_port=args.metrics_port, storage=StorageSettings(
                    retention_days=args.retention_days, timescale=args.timescale,
                    rollup_1m_retention_days=max(400, args.retention_days)),
                standby=lock_timing(args))
        except ValueError as exc:
            log.error("bad ingest options: %s", exc)
            return 2
        stopping = Stopping()
        return run_service(run_ingest(
            site, settings.require_database(), mqtt, options=options,
            stopping=stopping), stopping=stopping)
    if args.command == "rules":
        from rules.service import run_rules

        try:
            standby = lock_timing(args)
        except ValueError as exc:
            log.error("bad rules options: %s", exc)
            return 2
        stopping = Stopping()
        return run_service(run_rules(
            site, settings.require_database(), mqtt,
            procedures_dir=args.procedures, mqtt_protocol=settings.mqtt_protocol,
            gateways=args.gateways, dispatch_path=args.dispatch,
            dispatch=not args.no_dispatch, metrics_port=args.metrics_port,
            stopping=stopping, standby=standby), stopping=stopping)
    if args.command == "api":
        from api.service import run_api

        return run_api(settings.require_database(), args.host, args.port, site=site)
    raise AssertionError(args.command)


def _broker_config(args: argparse.Namespace) -> int:
    from facility.site import load_site
    from stack.broker_config import identities, mosquitto_snippet, write_broker_files

    sites = [load_site(path) for path in args.sites]
    files = write_broker_files(sites, args.out)
    users = [i for site in sites for i in identities(site)]
    log.info("wrote %s and %s for %d users; each service's password is in %s/<user>.password",
             files.passwd, files.acl, len(users), files.credentials)
    print(mosquitto_snippet(files), end="")
    for ident in users:
        print(f"# {ident.role:<8} FACILITY_MQTT_USERNAME={ident.username} "
              f"FACILITY_MQTT_PASSWORD_FILE={files.password_file(ident.username)}")
    return 0


def _centre_config(args: argparse.Namespace) -> int:
    from stack.centre.config_files import write_centre_files
    from stack.centre.description import load_description

    description = load_description(args.centre)
    for machine, written in write_centre_files(description, args.out).items():
        for engine, path in written.files.items():
            print(f"{machine:<10} {engine:<10} {path}")
    log.info("passwords in %s (made once, kept on re-runs)", description.secrets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
