"""The spine through a secure broker, as an operator runs it in production: `facility
simulate` -> two `facility gateway` processes -> mosquitto (TLS, the site's logins from
`facility broker-config`, its ACL) -> `facility ingest` and `facility rules` -> PostgreSQL,
each process with its own identity from the environment (user name, password file, CA).

Telemetry of both gateways is stored and an entrapment becomes an alarm; the broker's log
shows every client logged in under its own identity (the listener speaks TLS only), and no
service logged a refusal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from facility.site import load_site
from stack.broker_config import gateway_user, ingest_user, rules_user
from tests.integration.chain_support import ROOT, chain, poll, query
from tests.integration.secure_broker_support import SecureBroker, start_secure_broker
from tests.integration.test_mqtt_security import write_site

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NOT_AUTHORISED = "disconnected, not authorised"  # mosquitto's line for a refused login
PER_DEVICE = ("SELECT d.name, count(*) AS n FROM telemetry t JOIN points p ON p.id = t.point_id"
              " JOIN devices d ON d.id = p.device_id GROUP BY d.name")


@pytest.fixture
def spine_site(tmp_path: Path, site_id: str) -> Path:
    site = write_site(tmp_path, site_id)
    raw = yaml.safe_load(site.path.read_text())
    raw["rules"] = {"entrapment": {"on_delay_s": 2}}
    raw["gateways"] = [{"id": g["id"], "report_period_s": 5} for g in raw["gateways"]]
    site.path.write_text(yaml.safe_dump(raw))
    return site.path


@pytest.fixture
def secure(spine_site: Path, tmp_path: Path) -> Iterator[SecureBroker]:
    with start_secure_broker(load_site(spine_site), tmp_path / "secure") as broker:
        yield broker


# MQTT 3.1.1 is the only version the clustered brokers speak: the whole spine on both
MOSQUITTO_PROTOCOL = {"5": "p5", "3.1.1": "p2"}  # as mosquitto logs a client's version


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_telemetry_and_alarms_flow_through_an_authenticated_tls_broker(
    tmp_path: Path, database_url: str, spine_site: Path, secure: SecureBroker, site_id: str,
    protocol: str,
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"steps": [
        {"at": "5s", "device": "a-lift", "fault": "entrapment", "duration": "5m"}]}))
    with chain(tmp_path, database_url=database_url, mqtt_url=secure.url,
               mqtt_protocol=protocol, site=spine_site) as c:
        c.start("rules", "rules", "--procedures", str(ROOT / "procedures"), "--no-dispatch",
                ready="rules subscribed to", env=secure.env(rules_user(site_id)))
        c.start("ingest", "ingest", ready="ingest subscribed to",
                env=secure.env(ingest_user(site_id)))
        c.start("simulate", "simulate", "--scenario", str(scenario),
                ready="simulators of site")
        for gw in ("gw-a", "gw-b"):
            c.start(gw, "gateway", "--gateway", gw, "--state-dir", str(tmp_path / "state"),
                    ready=f"gateway {gw} online", env=secure.env(gateway_user(site_id, gw)))
        poll(lambda: {r["name"] for r in query(database_url, PER_DEVICE) if r["n"] > 0}
             == {"a-lift", "b-pumps"}, 90, "telemetry of both gateways stored")
        poll(lambda: query(database_url, "SELECT 1 FROM alarms WHERE source = 'a-lift'"
                                         " AND alarm_type = 'entrapment'"),
             90, "the entrapment alarm raised")
        logs = {name: s.text() for name, s in c.services.items()}
    for name in ("rules", "ingest", "gw-a", "gw-b"):
        assert f"MQTT connected to {secure.url} as " in logs[name], name
        assert "MQTT broker" not in logs[name], (name, logs[name])  # no refusal of any kind
    broker_log = secure.log()
    logins = [line for line in broker_log.splitlines() if "New client connected" in line]
    assert logins and all(" u'" in line for line in logins), logins  # none anonymous
    # every client (gateways, ingest, rules: subscribers and publishers) spoke the version
    assert all(f"({MOSQUITTO_PROTOCOL[protocol]}," in line for line in logins), logins
    users = {line.rsplit("u'", 1)[1].rstrip("').") for line in logins}
    assert users == {rules_user(site_id), ingest_user(site_id),
                     gateway_user(site_id, "gw-a"), gateway_user(site_id, "gw-b")}, logins


def test_services_refused_by_the_broker_say_why_once_and_keep_retrying(
    tmp_path: Path, database_url: str, spine_site: Path, secure: SecureBroker, site_id: str,
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")

    def env(user: str) -> dict[str, str]:
        return secure.env(user) | {"FACILITY_MQTT_PASSWORD_FILE": str(wrong)}

    refused = "refused the login of user"
    with chain(tmp_path, database_url=database_url, mqtt_url=secure.url, mqtt_protocol="5",
               site=spine_site) as c:
        c.start("rules", "rules", "--procedures", str(ROOT / "procedures"), "--no-dispatch",
                ready=refused, env=env(rules_user(site_id)))
        c.start("ingest", "ingest", ready=refused, env=env(ingest_user(site_id)))
        c.start("gw-a", "gateway", "--gateway", "gw-a", "--state-dir", str(tmp_path / "state"),
                ready=refused, env=env(gateway_user(site_id, "gw-a")))
        # several rounds of backoff (1 s doubling) of the three clients, counted by the broker
        poll(lambda: secure.log().count(NOT_AUTHORISED) >= 12, 60, "12 refused logins")
        for name, service in c.services.items():
            assert service.proc.poll() is None, f"{name} exited"
        logs = {name: s.text() for name, s in c.services.items()}
    for name, text in logs.items():
        lines = [line for line in text.splitlines() if "MQTT broker" in line]
        # one line (rules connect their publisher first and wait for it)
        assert len(lines) == 1, (name, lines)
        assert all(f"MQTT broker {secure.url}: {refused}" in line for line in lines), lines
        assert "not-the-password" not in text
    # a spinning client shows as a burst: with backoff (at least about 0.5 s between two
    # attempts of one client) three clients make a few attempts in any one second, whatever
    # the machine's speed (a slower machine makes fewer)
    per_second = Counter(line.split(": ", 1)[0] for line in secure.log().splitlines()
                         if NOT_AUTHORISED in line)
    assert max(per_second.values()) <= 9, per_second.most_common(3)
