"""An MQTT probe for the centre's broker cluster, run as a process on a machine of the
centre (``python -m stack.centre.probe publish|subscribe ...``) by the kill tests and the
failover benchmark: the same clients the services use, so what it measures is what they get.

``publish``: QoS 1 messages numbered 1, 2, ... (``{"seq": n, "pad": ...}``, about
``--size`` bytes) on ``--topic`` at up to ``--rate`` per second with ``--window`` in flight
(``facility.mqtt.MqttClient``); every PUBACK is written to ``--out`` as ``ack <seq> <t>``.
A message not acknowledged within ``--timeout`` is published again (a new PUBLISH of the
same seq, as the gateway's store-and-forward does), so every seq is acknowledged in the end.

``subscribe``: a persistent session (``facility.mqtt_session.MqttSession``, the ingest and
rules client) on ``--topic``; every delivery is written as ``got <seq> <t> <node>`` and
acknowledged after the write (as ingest acknowledges after its commit); each connection as
``connected <node> <t>``. Both read the endpoint from the environment like the services
(``FACILITY_MQTT_URL`` list, login, CA, keepalive) and stop at SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from facility.mqtt import MqttClient, MqttError
from facility.mqtt_session import MqttSession
from facility.settings import CommonSettings


async def publish(args: argparse.Namespace, out: IO[str]) -> None:
    settings = CommonSettings()
    pad = "x" * max(0, args.size - 40)
    async with MqttClient(settings.mqtt_endpoint(), args.client_id,
                          protocol=settings.mqtt_protocol, reconnect_max_s=1,
                          max_inflight=args.window) as client:
        await client.wait_connected(60)
        window = asyncio.Semaphore(args.window)
        interval = 1.0 / args.rate if args.rate > 0 else 0.0
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        async with asyncio.TaskGroup() as tg:
            for seq in range(1, args.count + 1 if args.count else 1 << 62):
                await window.acquire()
                tg.create_task(_one(client, args, seq, pad, out, window))
                if interval:
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - loop.time()))


async def _one(client: MqttClient, args: argparse.Namespace, seq: int, pad: str,
               out: IO[str], window: asyncio.Semaphore) -> None:
    payload = json.dumps({"seq": seq, "pad": pad}).encode()
    try:
        while True:
            try:
                await client.publish(args.topic, payload, timeout_s=args.timeout)
                break
            except (TimeoutError, MqttError):
                out.write(f"retry {seq} {time.time():.3f}\n")
        out.write(f"ack {seq} {time.time():.3f}\n")
        out.flush()
    finally:
        window.release()


async def subscribe(args: argparse.Namespace, out: IO[str]) -> None:
    settings = CommonSettings()
    session = MqttSession(settings.mqtt_endpoint(), args.client_id, [args.topic],
                          protocol=settings.mqtt_protocol, receive_maximum=1000,
                          backoff_initial_s=0.1, backoff_max_s=1.0)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(session.run())
        connections = 0
        while True:
            if not session.pending:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await session.arrived.wait()
            if session.connections != connections:
                connections = session.connections
                out.write(f"connected {session.url} {time.time():.3f}\n")
            batch = session.take()
            now = time.time()
            for d in batch:
                seq = json.loads(d.payload)["seq"]
                out.write(f"got {seq} {now:.3f} {session.url} {int(d.dup)}\n")
            out.flush()
            session.ack(batch)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.centre.probe")
    parser.add_argument("role", choices=["publish", "subscribe"])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=0, help="messages/s; 0: as fast")
    parser.add_argument("--count", type=int, default=0, help="0: until stopped")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with open(args.out, "a", buffering=1) as out:
        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
            await (publish(args, out) if args.role == "publish" else subscribe(args, out))
        try:
            asyncio.run(run())
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass



@dataclass
class ProbeRecord:
    """What the probes wrote: acknowledged seqs (publisher), received seqs and when
    (subscriber), the subscriber's connections."""

    acked: dict[int, float] = field(default_factory=dict)
    received: dict[int, list[float]] = field(default_factory=dict)
    connections: list[tuple[str, float]] = field(default_factory=list)

    @classmethod
    def read(cls, pub_file: Path, sub_file: Path) -> ProbeRecord:
        rec = cls()
        for line in _lines(pub_file):
            if line[0] == "ack":
                rec.acked.setdefault(int(line[1]), float(line[2]))
        for line in _lines(sub_file):
            if line[0] == "got":
                rec.received.setdefault(int(line[1]), []).append(float(line[2]))
            elif line[0] == "connected":
                rec.connections.append((line[1], float(line[2])))
        return rec

    @property
    def lost(self) -> list[int]:
        return sorted(set(self.acked) - set(self.received))

    @property
    def duplicated(self) -> int:
        return sum(len(times) - 1 for times in self.received.values())

    def resumed_after(self, t: float) -> float:
        """Seconds from ``t`` (a kill) until the subscriber received again on a connection
        made after ``t``."""
        again = [at for _, at in self.connections if at > t]
        if not again:
            return float("inf")
        later = [at for times in self.received.values() for at in times if at >= again[0]]
        return (min(later) - t) if later else float("inf")

    def ack_gap_after(self, t: float) -> float:
        later = [at for at in self.acked.values() if at > t]
        return (min(later) - t) if later else float("inf")

    def ack_rate(self, start: float, end: float) -> float:
        n = sum(1 for at in self.acked.values() if start <= at < end)
        return n / (end - start) if end > start else 0.0


def _lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
