"""The broker cluster's files for ``facility centre-config``: every broker machine's
``<out>/<machine>/<engine>/`` (RabbitMQ: rabbitmq.conf, enabled_plugins, definitions.json,
.erlang.cookie; NATS: nats.conf; both: the node's certificate and key, the CA)."""

from __future__ import annotations

from pathlib import Path

from stack.centre.broker_secrets import BrokerSecrets
from stack.centre.description import CentreDescription
from stack.centre.nats import write_nats_files
from stack.centre.rabbitmq import write_rabbitmq_files


def write_broker_files(description: CentreDescription, secrets_: BrokerSecrets,
                       out: Path) -> dict[str, dict[str, Path]]:
    """Every broker machine's files under ``out/<machine>/<engine>/``."""
    spec = description.broker
    assert spec is not None
    written = {}
    for machine in spec.machines:
        folder = out / machine / spec.engine
        written[machine] = (write_rabbitmq_files if spec.engine == "rabbitmq"
                            else write_nats_files)(description, secrets_, machine, folder)
    return written
