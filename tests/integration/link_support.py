"""A TCP link a test can cut: a relay process between one client and the broker.

``python -m tests.integration.link_support PORT TARGET_PORT`` listens on 127.0.0.1:PORT and
relays every connection to 127.0.0.1:TARGET_PORT. ``Link.cut`` SIGKILLs it (every relayed
connection ends, new ones are refused: the broker is out of that client's reach, as when
its machine is cut off from the brokers, and no other client notices); ``Link.freeze``
SIGSTOPs it (silence: the client notices by its keepalive); ``Link.restore`` starts a new
relay on the same port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from facility.ports import free_port
from stack.embedded.lifetime import die_with_parent
from tests.integration.chain_support import poll

ROOT = Path(__file__).resolve().parents[2]
READY = "relaying"


class Link:
    """A relay on its own port to the broker at ``target_port``; ``url`` is what a client
    is given instead of the broker's own."""

    def __init__(self, target_port: int, log: Path) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def restore(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.link_support", str(self.port),
                 str(self.target_port)], cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent)
        proc = self.proc
        poll(lambda: READY in self.log.read_text(errors="replace") or proc.poll() is not None,
             30, f"the relay on {self.port}", interval_s=0.05)
        assert proc.poll() is None, self.log.read_text(errors="replace")

    def freeze(self) -> None:
        """SIGSTOP the relay: its connections go silent and a new one is accepted by the
        kernel but never answered (a link that drops everything, no reset)."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)

    def cut(self) -> None:
        """SIGKILL the relay: the hard way, nothing said to either side."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _relay(target_port: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _main(port: int, target_port: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _relay(target_port, r, w), "127.0.0.1", port)
    print(READY, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2])))
