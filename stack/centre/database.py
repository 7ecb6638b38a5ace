"""The centre's database, started on the machines of a Centre (tests and benchmarks): an
etcd member, a Patroni-managed PostgreSQL node and (optionally) HAProxy on each database
machine, from the files ``facility centre-config`` writes.

    with Centre.create(3, work_dir) as centre:
        db = start_database(centre)          # leader elected, app role, database, schema
        db.url()                             # multi-host libpq URL, target_session_attrs
        db.haproxy_url("m2")                 # through the HAProxy on m2
        old = db.leader(); centre.machine(old).kill()
        new = db.wait_leader(60, other_than=old)
        db.restart(old)                      # after machine.revive(): etcd + Patroni again

The leader is what a majority of the live nodes' Patroni REST APIs (``GET /cluster``)
name, so a partitioned old primary that still believes in itself is not counted. Every
process runs as the ``postgres`` user inside its machine; ``close`` kills them (by pid,
through the namespaces) and removes the data directory."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from facility.db.migrate import migrate
from stack.centre.config_files import MachineFiles, write_centre_files
from stack.centre.description import (
    CentreDescription,
    CentreSecrets,
    DatabaseSpec,
    HaproxySpec,
    describe,
    ensure_secrets,
)
from stack.centre.etcd import database_spec, etcd_argv
from stack.centre.haproxy import haproxy_argv
from stack.centre.machines import Centre, Machine, MachineError, namespace_pids
from stack.centre.patroni import SUPERUSER, patroni_argv

log = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """The cluster did not come up, or has no leader in time."""


def centre_description(centre: Centre, data_dir: Path, *, database_machines: int = 3,
                       haproxy: Sequence[str] | None = None, spec: DatabaseSpec | None = None
                       ) -> CentreDescription:
    """A description of ``centre``'s machines with the database on the first
    ``database_machines`` and an HAProxy on each of ``haproxy`` (default: the database
    machines; empty: none); every machine of the centre may connect."""
    names = [m.name for m in centre.machines[:database_machines]]
    spec = spec or DatabaseSpec(machines=names)
    proxies = names if haproxy is None else list(haproxy)
    if proxies and spec.haproxy is None:
        spec = spec.model_copy(update={"haproxy": HaproxySpec(machines=proxies)})
    return describe([(m.name, m.address) for m in centre.machines], data_dir,
                    secrets=data_dir / "secrets.yaml", database=spec)


@dataclass
class DatabaseCluster:
    centre: Centre
    description: CentreDescription
    secrets: CentreSecrets
    files: dict[str, MachineFiles]

    @property
    def spec(self) -> DatabaseSpec:
        return database_spec(self.description)

    @property
    def nodes(self) -> list[str]:
        return list(self.spec.machines)

    def url(self, *, connect_timeout_s: int = 2) -> str:
        """The services' target: every node, libpq picks the one that accepts writes."""
        hosts = ",".join(f"{self.description.address(m)}:{self.spec.port}" for m in self.nodes)
        return (f"postgresql://{self.spec.user}:{quote(self.secrets.database.app, safe='')}"
                f"@{hosts}/{self.spec.database}?target_session_attrs=read-write"
                f"&connect_timeout={connect_timeout_s}")

    def haproxy_url(self, machine: str | None = None, *, connect_timeout_s: int = 3) -> str:
        """Through the HAProxy on ``machine`` (default: the first)."""
        if self.spec.haproxy is None:
            raise DatabaseError("this cluster runs no HAProxy")
        machine = machine or self.spec.haproxy.machines[0]
        return (f"postgresql://{self.spec.user}:{quote(self.secrets.database.app, safe='')}"
                f"@{self.description.address(machine)}:{self.spec.haproxy.port}"
                f"/{self.spec.database}?connect_timeout={connect_timeout_s}")

    def node_url(self, machine: str, *, database: str | None = None) -> str:
        """The superuser on one node (administration, assertions)."""
        return (f"postgresql://{SUPERUSER}:{quote(self.secrets.database.superuser, safe='')}"
                f"@{self.description.address(machine)}:{self.spec.port}"
                f"/{database or self.spec.database}?connect_timeout=3")

    def member_views(self) -> dict[str, dict[str, object]]:
        """Each live node's ``GET /cluster`` answer, asked from inside its own machine."""
        views: dict[str, dict[str, object]] = {}
        for name in self.nodes:
            machine = self.centre.machine(name)
            if not machine.pids():
                continue
            url = f"http://{machine.address}:{self.spec.rest_port}/cluster"
            try:
                views[name] = machine.call(lambda u=url: _get_json(u))  # type: ignore[misc]
            except (OSError, ValueError):
                continue
        return views

    def leader(self) -> str | None:
        """The node a majority of the nodes name leader (None while there is none)."""
        votes: Counter[str] = Counter()
        for view in self.member_views().values():
            members = view.get("members", [])
            for member in members if isinstance(members, list) else []:
                if member.get("role") == "leader" and member.get("state") == "running":
                    votes[str(member["name"])] += 1
        for name, count in votes.most_common(1):
            if count * 2 > len(self.nodes):
                return name
        return None

    def sync_standby(self) -> str | None:
        for view in self.member_views().values():
            for member in view.get("members", []):  # type: ignore[attr-defined]
                if member.get("role") == "sync_standby":
                    return str(member["name"])
        return None

    def healthy(self) -> bool:
        """Every node is a running member, one leads and one is the synchronous standby."""
        views = self.member_views()
        for view in views.values():
            members = view.get("members", [])
            if not isinstance(members, list):
                continue
            states = {str(m["name"]): (m.get("role"), m.get("state")) for m in members}
            if set(states) == set(self.nodes) \
                    and all(state in ("running", "streaming") for _r, state in states.values()) \
                    and {role for role, _s in states.values()} >= {"leader", "sync_standby"}:
                return True
        return False

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if time.monotonic() > deadline:
                raise DatabaseError(f"the cluster is not whole within {timeout_s:.0f} s"
                                    f"{self.diagnosis()}")
            time.sleep(0.3)

    def wait_leader(self, timeout_s: float, *, other_than: str | None = None) -> str:
        """Wait until a leader (other than ``other_than``) is elected and accepts writes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            name = self.leader()
            if name is not None and name != other_than and self._writable(name):
                return name
            time.sleep(0.2)
        raise DatabaseError(f"no leader{f' other than {other_than}' if other_than else ''} "
                            f"within {timeout_s:.0f} s{self.diagnosis()}")

    def diagnosis(self, log_lines: int = 12) -> str:
        """What each live node says of the members, and the end of each node's etcd and
        Patroni logs: the text a timeout carries, so that a failed run explains itself."""
        parts = []
        for name, view in self.member_views().items():
            members = view.get("members", [])
            said = ", ".join(f"{m.get('name')} {m.get('role')} {m.get('state')}"
                             f" lag={m.get('lag', '-')} tl={m.get('timeline', '-')}"
                             for m in (members if isinstance(members, list) else []))
            parts.append(f"{name} sees: {said or view}")
        for name in self.nodes:
            machine = self.centre.machine(name)
            for engine in ("etcd", "patroni"):
                path = machine.log_path(engine)
                try:
                    tail = path.read_text(errors="replace").splitlines()[-log_lines:]
                except OSError:
                    continue
                parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "; " + "\n".join(parts) if parts else ""

    def _writable(self, name: str) -> bool:
        def probe() -> bool:
            try:
                with psycopg.connect(self.node_url(name, database="postgres")) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    return row is not None and row[0] is False
            except psycopg.Error:
                return False

        return self.centre.machine(name).call(probe)

    def start_node(self, name: str) -> None:
        """Start etcd, Patroni and HAProxy (if configured) on one machine."""
        machine = self.centre.machine(name)
        user = self.spec.os_user
        files = self.files[name].files
        machine.start("etcd", etcd_argv(files["etcd"]), user=user, env=_env())
        machine.start("patroni", patroni_argv(files["patroni"]), user=user, env=_env())
        if "haproxy" in files:
            self.start_haproxy(name)

    def start_haproxy(self, name: str) -> None:
        path = self.files[name].files["haproxy"]
        self.centre.machine(name).start("haproxy", haproxy_argv(str(path)), env=_env())

    def proxy_only_machines(self) -> list[str]:
        """Machines with an HAProxy but no database node (a service machine)."""
        proxies = self.spec.haproxy.machines if self.spec.haproxy is not None else []
        return [m for m in proxies if m not in self.nodes]

    def restart(self, name: str) -> None:
        """After ``revive``: the machine's engines again (etcd rejoins with its data,
        Patroni rejoins as a standby, pg_rewind if needed)."""
        self.start_node(name)

    def close(self) -> None:
        """Kill the database's processes on every machine (not the centre's other
        engines) and remove the data directory."""
        for name in self.nodes + self.proxy_only_machines():
            machine = self.centre.machine(name)
            _kill_user_processes(machine, self.spec.os_user)
            for proc_name, proc in machine.processes:
                if proc_name == "haproxy" and proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
        shutil.rmtree(self.description.data_dir, ignore_errors=True)


def start_database(centre: Centre, description: CentreDescription | None = None, *,
                   timeout_s: float = 120.0, schema: bool = True) -> DatabaseCluster:
    """Write the files, start every node, wait for a leader; create the application role
    and database and (``schema``) apply the migrations. On failure everything started is
    killed again."""
    if description is None:
        data_dir = Path(tempfile.mkdtemp(prefix="facility-centre-"))
        description = centre_description(centre, data_dir)
    spec = database_spec(description)
    _prepare_dir(description.data_dir, spec.os_user)
    secrets = ensure_secrets(description.secrets)
    files = write_centre_files(description, description.data_dir / "config", secrets)
    _chown_tree(description.data_dir, spec.os_user)
    cluster = DatabaseCluster(centre, description, secrets, files)
    try:
        for name in cluster.nodes:
            cluster.start_node(name)
        for name in cluster.proxy_only_machines():
            cluster.start_haproxy(name)
        leader = cluster.wait_leader(timeout_s)
        log.info("database leader %s", leader)
        cluster.centre.machine(leader).call(lambda: _create_app(cluster, leader))
        if schema:
            cluster.centre.machine(leader).call(lambda: migrate(cluster.url()))
        cluster.wait_healthy(timeout_s)
    except BaseException:
        cluster.close()
        raise
    return cluster


def _create_app(cluster: DatabaseCluster, leader: str) -> None:
    spec = cluster.spec
    password = cluster.secrets.database.app
    with psycopg.connect(cluster.node_url(leader, database="postgres"),
                         autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                        (spec.user,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(spec.user), sql.Literal(password)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                        (spec.database,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(spec.database), sql.Identifier(spec.user)))


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=2) as response:
        data = json.loads(response.read())
    if not isinstance(data, dict):
        raise ValueError(f"{url}: not a JSON object")
    return data


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8", "ETCD_UNSUPPORTED_ARCH": os.uname().machine}


def _prepare_dir(path: Path, user: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for folder in path.resolve().parents:
        if not os.stat(folder).st_mode & 0o001:
            raise DatabaseError(f"{folder} is not searchable by others: {user} could not reach "
                                f"{path} (choose a data directory it can reach)")
    os.chmod(path, 0o755)
    _chown_tree(path, user)


def _chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def _kill_user_processes(machine: Machine, user: str) -> None:
    """SIGKILL every process of ``user`` in the machine until none is left."""
    uid = pwd.getpwnam(user).pw_uid
    deadline = time.monotonic() + 10
    while True:
        mine = [p for p in namespace_pids(machine.namespace) if _uid(p) == uid]
        if not mine:
            return
        for pid in mine:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise MachineError(f"{user}'s processes {mine} on {machine.name} survive SIGKILL")
        time.sleep(0.02)


def _uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
