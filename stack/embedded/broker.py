"""mosquitto on loopback, for the demo and the tests: anonymous and plain (the bulk of the
tests), or secure (``BrokerSecurity``: a TLS listener, a password file and an ACL, as the
demo runs it). mosquitto is the only broker: the pure-Python amqtt fallback is gone (no TLS
with a password file and an ACL, no shared subscriptions, no session across a restart)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from stack.embedded.lifetime import die_with_parent, stop_process

log = logging.getLogger(__name__)
INSTALL_HINT = "install it: sudo apt-get install mosquitto"


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class BrokerSecurity:
    """A TLS listener with these server files, logins from ``password_file`` only and the
    ACL in ``acl_file``; ``require_certificate``: clients must show a certificate signed by
    the CA as well."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    password_file: Path
    acl_file: Path
    require_certificate: bool = False


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def require_mosquitto(prefer: str = "mosquitto") -> str:
    """mosquitto's path; BrokerError with what to do if it cannot be used."""
    if prefer not in ("auto", "mosquitto"):
        raise BrokerError(f"the {prefer} broker is no longer supported: the demo and the "
                          f"tests need mosquitto ({INSTALL_HINT})")
    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise BrokerError(f"mosquitto is not installed; {INSTALL_HINT}")
    return mosquitto


@dataclass
class Broker:
    work_dir: Path
    port: int
    prefer: str = "mosquitto"  # kept for callers; "amqtt" is refused
    security: BrokerSecurity | None = None
    process: subprocess.Popen[bytes] | None = None
    kind: str = "mosquitto"

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.security is not None else "mqtt"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "mosquitto.log"

    @property
    def supports_shared_subscriptions(self) -> bool:
        return True

    def start(self, timeout_s: float = 20.0) -> None:
        mosquitto = require_mosquitto(self.prefer)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as logfile:
            self.process = subprocess.Popen(
                [mosquitto, "-c", str(self._write_conf())], stdout=logfile,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=die_with_parent,
            )
        if not self._wait_running(log_start, timeout_s):
            code = self.process.poll()
            self.stop()
            raise BrokerError(f"mosquitto did not listen on {self.port} (exit {code}); "
                              f"see {self.log_path}")
        log.info("mosquitto on %s (pid %d%s)", self.url, self.process.pid,
                 ", TLS, logins and ACL" if self.security else ", anonymous")

    def _wait_running(self, log_start: int, timeout_s: float) -> bool:
        """Wait for mosquitto's "running" line, logged once its listener is open (a probe
        connection instead would show in the log as a failed TLS handshake)."""
        deadline = time.monotonic() + timeout_s
        assert self.process is not None
        while time.monotonic() < deadline and self.process.poll() is None:
            with open(self.log_path, "rb") as f:
                f.seek(log_start)
                if b" running" in f.read():
                    return True
            time.sleep(0.05)
        return False

    def _write_conf(self) -> Path:
        conf = self.work_dir / "mosquitto.conf"
        persist = self.work_dir / "mosquitto-data"
        persist.mkdir(exist_ok=True)
        lines = [
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            *self._security_lines(),
            "persistence true",
            f"persistence_location {persist}/",
            "autosave_interval 5",
            "max_inflight_messages 1000",
            "max_queued_messages 1000000",
            "max_packet_size 1048576",
            "user root" if os.geteuid() == 0 else "",
            "log_dest stderr",  # unbuffered: each line is in the log file at once
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",  # "running", each connection and its user name
            "connection_messages true",
            "",
        ]
        conf.write_text("".join(f"{line}\n" for line in lines if line))
        return conf

    def _security_lines(self) -> list[str]:
        sec = self.security
        if sec is None:
            return ["allow_anonymous true"]
        return [
            f"cafile {sec.ca_file}",
            f"certfile {sec.cert_file}",
            f"keyfile {sec.key_file}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if sec.require_certificate else 'false'}",
            "allow_anonymous false",
            f"password_file {sec.password_file}",
            f"acl_file {sec.acl_file}",
        ]

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        stop_process(proc, "mosquitto broker", timeout_s=timeout_s)
