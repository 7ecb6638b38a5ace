"""An MQTT broker on loopback: mosquitto when it is installed, else amqtt (pure Python,
MQTT 3.1.1 only, no shared subscriptions, no session across a restart)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from facility.embedded.lifetime import die_with_parent, stop_process
from facility.embedded.ports import wait_tcp

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


@dataclass
class Broker:
    work_dir: Path
    port: int
    prefer: str = "auto"  # auto | mosquitto | amqtt
    process: subprocess.Popen[bytes] | None = None
    kind: str = ""

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def supports_shared_subscriptions(self) -> bool:
        return self.kind == "mosquitto"

    def start(self, timeout_s: float = 20.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        mosquitto = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if self.prefer == "mosquitto" and not mosquitto:
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
        if mosquitto and self.prefer != "amqtt":
            self.kind = "mosquitto"
            args = [mosquitto, "-c", str(self._mosquitto_conf())]
        else:
            self.kind = "amqtt"
            args = [sys.executable, "-m", "facility.embedded.amqtt_broker", str(self.port)]
        log_path = self.work_dir / f"{self.kind}.log"
        with open(log_path, "ab") as logfile:
            self.process = subprocess.Popen(
                args, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=die_with_parent,
            )
        if not wait_tcp("127.0.0.1", self.port, timeout_s):
            code = self.process.poll()
            self.stop()
            raise BrokerError(f"{self.kind} did not listen on {self.port} (exit {code}); "
                              f"see {log_path}")
        log.info("%s broker on 127.0.0.1:%d (pid %d)", self.kind, self.port, self.process.pid)

    def _mosquitto_conf(self) -> Path:
        conf = self.work_dir / "mosquitto.conf"
        persist = self.work_dir / "mosquitto-data"
        persist.mkdir(exist_ok=True)
        conf.write_text(
            "\n".join([
                f"listener {self.port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {persist}/",
                "autosave_interval 5",
                "max_inflight_messages 1000",
                "max_queued_messages 1000000",
                "max_packet_size 1048576",
                "user root" if _is_root() else "",
                "log_dest stdout",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "",
            ])
        )
        return conf

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        stop_process(proc, f"{self.kind} broker", timeout_s=timeout_s)


def _is_root() -> bool:
    import os

    return os.geteuid() == 0
