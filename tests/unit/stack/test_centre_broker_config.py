"""The broker cluster's generated configuration, no I/O but temporary files: topic filters
as RabbitMQ routing-key regexes and NATS subjects, each identity's permissions (a gateway
writes only its subtree, ingest reads, rules reads and writes only alarms), RabbitMQ's
password hash, and both engines' files naming every node, TLS and the replication."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

from facility.site import load_site
from stack.broker_config import Identity, identities
from stack.centre.broker_files import write_broker_files
from stack.centre.broker_secrets import ensure_broker_secrets
from stack.centre.description import BrokerSpec, describe
from stack.centre.nats import subject, subjects, user_entry
from stack.centre.rabbitmq import password_hash, permissions, topic_regex

ROOT = Path(__file__).resolve().parents[3]
SITE = load_site(ROOT / "sites" / "demo.yaml")


def by_role(role: str) -> Identity:
    return next(i for i in identities(SITE) if i.role == role)


def allowed(pattern: str, topic: str) -> bool:
    return re.search(pattern, topic.replace("/", ".")) is not None


def test_rabbitmq_topic_permissions_follow_the_acl() -> None:
    assert topic_regex("facility/v1/s/gw-a/#") == r"^facility\.v1\.s\.gw\-a\."
    _, gw = permissions(by_role("gateway"))
    gw_id = by_role("gateway").username.split(".")[2]
    assert allowed(gw["write"], f"facility/v1/demo/{gw_id}/lift/telemetry")
    assert allowed(gw["write"], f"facility/v1/demo/{gw_id}/status")
    assert not allowed(gw["write"], "facility/v1/demo/other-gw/lift/telemetry")
    assert not allowed(gw["write"], "facility/v1/demo/alarms")
    assert gw["read"] == "^$"
    resource, rules = permissions(by_role("rules"))
    assert allowed(rules["write"], "facility/v1/demo/alarms")
    assert not allowed(rules["write"], "facility/v1/demo/gw-a/status")
    assert allowed(rules["read"], "facility.v1.demo.#")
    assert re.fullmatch(resource["configure"], "mqtt-subscription-rules-demoqos1")
    assert not re.fullmatch(resource["configure"], "mqtt-subscription-ingest-demoqos1")
    _, ingest = permissions(by_role("ingest"))
    assert ingest["write"] == "^$"


def test_rabbitmq_password_hash_is_salted_sha256() -> None:
    raw = base64.b64decode(password_hash("secret", salt=b"abcd"))
    assert raw == b"abcd" + hashlib.sha256(b"abcdsecret").digest()


def test_nats_subjects_and_permissions() -> None:
    assert subject("facility/v1/+/alarms") == "facility.v1.*.alarms"
    # MQTT's a/# matches a itself: NATS subscribes to both, so both are granted
    assert subjects("facility/v1/s/#") == ["facility.v1.s.>", "facility.v1.s"]
    perms = user_entry(by_role("ingest"), "pw")["permissions"]
    assert perms == {"publish": {"allow": ["_none_"]}, "subscribe": {"allow": [
        "facility.v1.demo.>", "facility.v1.demo", "$MQTT.sub.>"]}}


def test_both_engines_files_name_every_node_tls_and_replication(tmp_path: Path) -> None:
    for engine in ("rabbitmq", "nats"):
        d = describe([("m1", "10.0.0.11"), ("m2", "10.0.0.12"), ("m3", "10.0.0.13")],
                     tmp_path / engine, secrets=tmp_path / engine / "secrets.yaml",
                     broker=BrokerSpec(engine=engine, machines=["m1", "m2", "m3"],
                                       sites=[SITE.path]))
        secrets = ensure_broker_secrets(d)
        files = write_broker_files(d, secrets, tmp_path / "out" / engine)
        assert set(files) == {"m1", "m2", "m3"}
        if engine == "rabbitmq":
            conf = files["m2"]["rabbitmq.conf"].read_text()
            assert "mqtt.durable_queue_type = quorum" in conf
            assert "mqtt.listeners.ssl.default = 8883" in conf
            assert "mqtt.listeners.tcp = none" in conf
            assert all(f"rabbit@m{i}" in conf for i in (1, 2, 3))
            assert f"{tmp_path / engine / 'm2' / 'rabbitmq'}/server.crt" in conf
            defs = json.loads(files["m2"]["definitions.json"].read_text())
            assert {u["name"] for u in defs["users"]} == {i.username for i in identities(SITE)}
            assert files["m1"][".erlang.cookie"].read_text() == secrets.cookie
        else:
            text = files["m2"]["nats.conf"].read_text()
            conf = json.loads(text[text.index("{"):])
            assert conf["mqtt"]["stream_replicas"] == 3 and "tls" in conf["mqtt"]
            assert len(conf["cluster"]["routes"]) == 2
            assert conf["mqtt"]["listen"] == "10.0.0.12:8883"
        # made once: a re-run keeps every password
        again = ensure_broker_secrets(d)
        assert again.passwords() == secrets.passwords()


def test_centre_config_writes_the_broker_beside_the_database(tmp_path: Path) -> None:
    from stack.cli import main

    centre = tmp_path / "centre.yaml"
    centre.write_text(
        "data_dir: /var/lib/fc\nmachines:\n"
        + "".join(f"  - {{name: m{i}, address: 10.0.0.1{i}}}\n" for i in (1, 2, 3))
        + "database: {machines: [m1, m2, m3]}\n"
        f"broker: {{engine: nats, machines: [m1, m2, m3], sites: [{SITE.path}]}}\n")
    assert main(["centre-config", "--centre", str(centre), "--out", str(tmp_path / "out")]) == 0
    for m in ("m1", "m2", "m3"):
        assert (tmp_path / "out" / m / "nats" / "nats.conf").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "out" / m / "patroni.yml").exists()
    assert (tmp_path / "broker" / "ca.key").exists()  # beside the centre file, kept
    assert "/var/lib/fc/m2/nats/server.crt" in (tmp_path / "out" / "m2" / "nats" /
                                                "nats.conf").read_text()
