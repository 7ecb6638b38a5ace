"""RabbitMQ 3.10 (Debian's rabbitmq-server) as the centre's MQTT broker: one node per broker
machine, clustered by classic peer discovery, the MQTT plugin only (no AMQP listener), its
persistent sessions in quorum queues (``mqtt.durable_queue_type = quorum``, so a session
and its unacknowledged QoS 1 messages are on every node and survive the loss of one), MQTT
over TLS with the node's own certificate, no anonymous login, and the sites' identities with
the permissions closest to ``stack.broker_config``'s ACL that RabbitMQ can express.

Files per machine (``write_rabbitmq_files``): ``rabbitmq.conf``, ``enabled_plugins``,
``definitions.json`` (users with salted SHA-256 hashes, permissions; mode 0600),
``.erlang.cookie`` (the cluster's shared secret), the node's ``server.crt``/``server.key``
and the CA. ``rabbitmq_env`` is the environment to run ``/usr/lib/rabbitmq/bin/rabbitmq-server``
with (in a UTS namespace whose host name is the machine's: the node is ``rabbit@<machine>``).

Permissions. MQTT topics are routing keys of ``amq.topic`` with ``/`` as ``.``; RabbitMQ
checks topic permissions (write on publish, read on subscribe) by regular expression:
    gateway.{site}.{gw}  write ^facility\\.v1\\.{site}\\.{gw}\\. (subtree, Will); read nothing
    ingest.{site}        read ^facility\\.v1\\.{site}\\. ; write nothing
    rules.{site}         read the same; write ^facility\\.v1\\.{site}\\.alarms$
and resource permissions let only ingest and rules declare their own session queues
(``mqtt-subscription-<client id>qos1``, named after the client ids ``ingest-{site}`` and
``rules-{site}``). What it cannot express as mosquitto does: a denied publish is dropped
with the connection closed rather than refused per message; a subscription filter is
checked as a whole pattern, so a ``#`` filter wider than the grant is refused outright."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from stack.broker_config import Identity
from stack.centre.broker_secrets import BrokerSecrets, node_certificate
from stack.centre.description import CentreDescription

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
READY_LINE = "Server startup complete"
NET_TICKTIME_S = 5


def node_name(machine: str) -> str:
    return f"rabbit@{machine}"


def topic_regex(topic_filter: str) -> str:
    """An MQTT topic filter as a routing-key regex: ``a/b/#`` -> ``^a\\.b\\.``."""
    if topic_filter.endswith("/#"):
        return "^" + re.escape(topic_filter[:-2].replace("/", ".")) + r"\."
    return "^" + re.escape(topic_filter.replace("/", ".")) + "$"


def _any_of(filters: tuple[str, ...]) -> str:
    if not filters:
        return "^$"
    return "|".join(f"({topic_regex(f)})" for f in filters)


def _client_prefix(identity: Identity) -> str:
    site = identity.username.split(".", 2)[1]
    return f"{identity.role}-{site}"


def permissions(identity: Identity) -> tuple[dict[str, str], dict[str, str]]:
    """The user's resource permissions (configure, write, read) and topic permissions."""
    if identity.read:  # a subscriber: its own session queues, bound to amq.topic
        queue = rf"mqtt-subscription-{re.escape(_client_prefix(identity))}(qos[01]|-.*)"
        resource = {"configure": f"^{queue}$", "write": rf"^({queue}|amq\.topic)$",
                    "read": rf"^({queue}|amq\.topic)$"}
    else:
        resource = {"configure": "^$", "write": r"^amq\.topic$", "read": "^$"}
    topic = {"exchange": "amq.topic", "write": _any_of(identity.write),
             "read": _any_of(identity.read)}
    return resource, topic


def password_hash(password: str, salt: bytes | None = None) -> str:
    """``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(secrets_: BrokerSecrets) -> dict[str, Any]:
    users, perms, topic_perms = [], [], []
    for ident in secrets_.identities:
        users.append({"name": ident.username, "tags": [],
                      "password_hash": password_hash(secrets_.password(ident.username)),
                      "hashing_algorithm": "rabbit_password_hashing_sha256"})
        resource, topic = permissions(ident)
        perms.append({"user": ident.username, "vhost": "/", **resource})
        topic_perms.append({"user": ident.username, "vhost": "/", **topic})
    return {"users": users, "vhosts": [{"name": "/"}], "permissions": perms,
            "topic_permissions": topic_perms}


def installed_folder(description: CentreDescription, machine: str) -> Path:
    """Where the node's files live on its machine: ``<data_dir>/<machine>/rabbitmq``."""
    return description.machine_dir(machine) / "rabbitmq"


def rabbitmq_conf(description: CentreDescription, machine: str) -> str:
    spec = description.broker
    assert spec is not None
    folder = installed_folder(description, machine)
    lines = [
        "# Written by `facility centre-config`: one node of the centre's MQTT cluster.",
        "listeners.tcp = none",  # no AMQP: MQTT only (the CLI talks Erlang distribution)
        "loopback_users = none",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(f"cluster_formation.classic_config.nodes.{i} = {node_name(m)}"
          for i, m in enumerate(spec.machines, 1)),
        "cluster_partition_handling = pause_minority",
        # a node whose machine is gone (no FIN, no RST) is noticed after net_ticktime: the
        # default 60 s holds every quorum queue led there, and so the sessions, that long
        f"net_ticktime = {NET_TICKTIME_S}",
        f"load_definitions = {folder / 'definitions.json'}",
        "mqtt.allow_anonymous = false",
        "mqtt.vhost = /",
        "mqtt.exchange = amq.topic",
        "mqtt.durable_queue_type = quorum",  # before the first subscription, always
        "mqtt.subscription_ttl = 604800000",  # a session outlives a week's absence
        "mqtt.prefetch = 100",
        "log.console = true",
        "log.console.level = info",
        "log.file = false",
    ]
    if spec.tls:
        lines += [
            "mqtt.listeners.tcp = none",
            f"mqtt.listeners.ssl.default = {spec.mqtt_port}",
            f"ssl_options.cacertfile = {folder / 'ca.crt'}",
            f"ssl_options.certfile = {folder / 'server.crt'}",
            f"ssl_options.keyfile = {folder / 'server.key'}",
            "ssl_options.versions.1 = tlsv1.3",
            "ssl_options.versions.2 = tlsv1.2",
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
        ]
    else:
        lines.append(f"mqtt.listeners.tcp.default = {spec.mqtt_port}")
    return "\n".join(lines) + "\n"


def write_rabbitmq_files(description: CentreDescription, secrets_: BrokerSecrets,
                         machine: str, folder: Path) -> dict[str, Path]:
    """The node's files, written to ``folder`` and naming their installed place
    (``installed_folder``: the same folder when the machine's data_dir is the output)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "rabbitmq.conf": _write(folder / "rabbitmq.conf", rabbitmq_conf(description, machine)),
        "enabled_plugins": _write(folder / "enabled_plugins", "[rabbitmq_mqtt].\n"),
        "definitions.json": _write(folder / "definitions.json",
                                   json.dumps(definitions(secrets_), indent=1), 0o600),
        ".erlang.cookie": _write(folder / ".erlang.cookie", secrets_.cookie, 0o400),
        "ca.crt": _write(folder / "ca.crt", secrets_.ca_file.read_text()),
    }
    cert, key = node_certificate(secrets_, description, machine, folder)
    out |= {"server.crt": cert, "server.key": key}
    return out


def rabbitmq_env(machine: str, folder: Path) -> dict[str, str]:
    """The environment of ``rabbitmq-server`` for the node of ``machine`` in ``folder``."""
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(folder),  # the Erlang cookie is $HOME/.erlang.cookie
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "RABBITMQ_NODENAME": node_name(machine),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_PID_FILE": str(folder / "rabbit.pid"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_CTL_ERL_ARGS": f"-kernel net_ticktime {NET_TICKTIME_S}",
        # no busy-waiting schedulers: the machine's cores are shared with the services
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
    }


def rabbitmq_argv() -> list[str]:
    return [str(RABBITMQ_BIN / "rabbitmq-server")]


def rabbitmqctl_argv(machine: str, *args: str, tool: str = "rabbitmqctl") -> list[str]:
    """``rabbitmqctl`` (or another of the CLI tools: rabbitmq-queues, ...) against a node."""
    return [str(RABBITMQ_BIN / tool), "-n", node_name(machine), *args]


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    if path.exists():
        os.chmod(path, 0o600)  # the cookie is read-only once written
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path
