"""NATS 2.9 (Debian's nats-server) as the centre's MQTT broker: one server per broker
machine in a JetStream cluster (routes between every pair, authenticated), its MQTT
listener over TLS with the node's certificate, the MQTT sessions, retained messages and
QoS 1 messages in JetStream streams replicated to three nodes (``stream_replicas: 3``), no
anonymous login, and the sites' identities confined by subject permissions.

Files per machine (``write_nats_files``): ``nats.conf`` (mode 0600: nats-server 2.9 reads
plain passwords, the Debian package has no bcrypt tool), the node's certificate and the CA.

Permissions. MQTT topics are NATS subjects with ``/`` as ``.`` and ``#`` as ``>``:
    gateway.{site}.{gw}  publish facility.v1.{site}.{gw}.> ; subscribe nothing
    ingest.{site}        subscribe facility.v1.{site}.>    ; publish nothing
    rules.{site}         subscribe the same; publish facility.v1.{site}.alarms
each limited to MQTT connections (``allowed_connection_types``). What NATS cannot express
as mosquitto does: a denied publish is dropped silently (QoS 1 is still acknowledged); a
reader must also be allowed ``$MQTT.sub.>``, the subjects JetStream delivers every QoS 1
session's messages on (one reader of the account could in principle subscribe to another's),
and the JetStream API the MQTT layer uses internally is not subject to these lists."""

from __future__ import annotations

import json
import os
from pathlib import Path

from stack.broker_config import Identity
from stack.centre.broker_secrets import BrokerSecrets, node_certificate
from stack.centre.description import CentreDescription

NATS_SERVER = "/usr/sbin/nats-server"
NATS_READY_LINE = "Server is ready"
MQTT_DELIVERY = "$MQTT.sub.>"
ACK_WAIT_S = 10
PING_INTERVAL_S = 2  # a dead route (machine gone: no FIN, no RST) is dropped after 2 of them
CLIENT_PORT = 4222  # core NATS: on the machine's loopback only, nobody's business


def subject(topic_filter: str) -> str:
    """``facility/v1/s/#`` -> ``facility.v1.s.>``; ``+`` -> ``*``."""
    parts = ["*" if p == "+" else ">" if p == "#" else p for p in topic_filter.split("/")]
    return ".".join(parts)


def subjects(topic_filter: str) -> list[str]:
    """The subjects to allow for a filter: MQTT's ``a/#`` also matches ``a`` itself, and
    NATS subscribes to both (a grant of ``a.>`` alone refuses the whole subscription)."""
    if topic_filter.endswith("/#"):
        return [subject(topic_filter), subject(topic_filter[:-2])]
    return [subject(topic_filter)]


def user_entry(identity: Identity, password: str) -> dict[str, object]:
    return {
        "user": identity.username, "password": password,
        "permissions": {
            "publish": {"allow": [s for t in identity.write for s in subjects(t)]
                        or ["_none_"]},
            # a QoS 1 subscription is a JetStream consumer delivering on $MQTT.sub.<id>
            "subscribe": {"allow": [*(s for t in identity.read for s in subjects(t)),
                                    MQTT_DELIVERY] if identity.read else ["_none_"]}},
        "allowed_connection_types": ["MQTT"],
    }


def installed_folder(description: CentreDescription, machine: str) -> Path:
    """Where the node's files live on its machine: ``<data_dir>/<machine>/nats``."""
    return description.machine_dir(machine) / "nats"


def nats_conf(description: CentreDescription, secrets_: BrokerSecrets, machine: str) -> str:
    spec = description.broker
    assert spec is not None
    folder = installed_folder(description, machine)
    address = description.address(machine)
    routes = [f"nats-route://route:{secrets_.cookie}@{description.address(m)}:"
              f"{spec.cluster_port}" for m in spec.machines if m != machine]
    mqtt: dict[str, object] = {
        "listen": f"{address}:{spec.mqtt_port}",
        "stream_replicas": min(3, len(spec.machines)),
        # an unacknowledged delivery (its session's node died) goes out again after this
        "ack_wait": f"{ACK_WAIT_S}s",
        "max_ack_pending": 1000,
    }
    if spec.tls:
        mqtt["tls"] = {"cert_file": str(folder / "server.crt"),
                       "key_file": str(folder / "server.key"), "timeout": 5}
    conf: dict[str, object] = {
        "server_name": machine,
        "ping_interval": f"{PING_INTERVAL_S}s",
        "ping_max": 2,
        "listen": f"127.0.0.1:{CLIENT_PORT}",
        "jetstream": {"store_dir": str(folder / "jetstream")},
        "cluster": {
            "name": description.name,
            "listen": f"{address}:{spec.cluster_port}",
            "authorization": {"user": "route", "password": secrets_.cookie},
            "routes": routes,
        },
        "mqtt": mqtt,
        "authorization": {"users": [user_entry(i, secrets_.password(i.username))
                                    for i in secrets_.identities]},
    }
    # nats.conf accepts JSON (its format is a superset); the header is a comment
    return "# Written by `facility centre-config`: one node of the centre's MQTT cluster.\n" \
        + json.dumps(conf, indent=1) + "\n"


def write_nats_files(description: CentreDescription, secrets_: BrokerSecrets, machine: str,
                     folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "nats.conf"
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(nats_conf(description, secrets_, machine))
    ca = folder / "ca.crt"
    ca.write_text(secrets_.ca_file.read_text())
    cert, key = node_certificate(secrets_, description, machine, folder)
    return {"nats.conf": conf, "ca.crt": ca, "server.crt": cert, "server.key": key}


def nats_argv(folder: Path) -> list[str]:
    """``folder``: where the node's files are (its installed folder)."""
    return [NATS_SERVER, "-c", str(folder / "nats.conf")]
