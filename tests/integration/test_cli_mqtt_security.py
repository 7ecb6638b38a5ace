"""`facility broker-config` and the services' start-up checks of their MQTT login and TLS
settings, as an operator runs them (exit codes and messages)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stack.broker_config import password_hash

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sites" / "demo.yaml"


def facility(*args: str, env: dict[str, str] | None = None,
             cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACILITY_MQTT_")}
    return subprocess.run([sys.executable, "-m", "stack.cli", *args], capture_output=True,
                          text=True, env=clean | (env or {}), timeout=60, cwd=cwd)


def test_broker_config_writes_logins_and_acl_and_keeps_passwords(tmp_path: Path) -> None:
    out = facility("broker-config", "--site", str(DEMO), "--out", str(tmp_path / "auth"))
    assert out.returncode == 0, out.stderr
    auth = tmp_path / "auth"
    users = ["gateway.demo.gw-a", "gateway.demo.gw-b", "ingest.demo", "rules.demo"]
    passwd = dict(line.split(":", 1) for line in (auth / "passwd").read_text().splitlines())
    assert sorted(passwd) == users
    for user in users:
        secret = auth / "credentials" / f"{user}.password"
        assert secret.stat().st_mode & 0o077 == 0  # the owner's only
        salt_b64 = passwd[user].split("$")[3]
        assert passwd[user] == password_hash(secret.read_text().strip(),
                                             salt=base64.b64decode(salt_b64))
        assert f"FACILITY_MQTT_USERNAME={user} FACILITY_MQTT_PASSWORD_FILE={secret}" in out.stdout
    assert "allow_anonymous false" in out.stdout and "acl_file" in out.stdout
    assert (auth / "passwd").stat().st_mode & 0o077 == 0
    assert "user rules.demo\ntopic read facility/v1/demo/#\ntopic write facility/v1/demo/alarms" \
        in (auth / "acl").read_text()
    before = (auth / "credentials" / "ingest.demo.password").read_text()
    assert facility("broker-config", "--site", str(DEMO), "--out", str(auth)).returncode == 0
    assert (auth / "credentials" / "ingest.demo.password").read_text() == before
    # no secret on the terminal
    assert before.strip() not in out.stdout + out.stderr


@pytest.mark.parametrize(("env", "words"), [
    ({"FACILITY_MQTT_PASSWORD": "x"}, "an MQTT password needs FACILITY_MQTT_USERNAME"),
    ({"FACILITY_MQTT_USERNAME": "u", "FACILITY_MQTT_PASSWORD": "x",
      "FACILITY_MQTT_PASSWORD_FILE": __file__}, "not both"),
    ({"FACILITY_MQTT_CA_FILE": __file__}, "use mqtts://"),
    ({"FACILITY_MQTT_URL": "mqtts://127.0.0.1:1", "FACILITY_MQTT_CA_FILE": "/nonexistent"},
     "/nonexistent is not a readable file"),
])
def test_contradictory_mqtt_settings_stop_a_service_at_start(
    env: dict[str, str], words: str,
) -> None:
    out = facility("gateway", "--gateway", "gw-a", env=env)
    assert out.returncode == 2, out.stderr
    assert "bad configuration" in out.stderr and words in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_an_empty_password_file_or_a_bad_ca_file_stops_a_service_at_start(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    out = facility("ingest", "--database-url", "postgresql://nobody@127.0.0.1:1/x",
                   env={"FACILITY_MQTT_USERNAME": "ingest.demo",
                        "FACILITY_MQTT_PASSWORD_FILE": str(empty)})
    assert out.returncode == 2 and f"{empty} is empty" in out.stderr, out.stderr
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("not a certificate\n")
    out = facility("gateway", "--gateway", "gw-a",
                   env={"FACILITY_MQTT_URL": "mqtts://127.0.0.1:1",
                        "FACILITY_MQTT_CA_FILE": str(not_pem)})
    assert out.returncode == 1 and "cannot start gateway" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_the_demo_refuses_amqtt_before_starting_anything(tmp_path: Path) -> None:
    out = facility("demo", "--broker", "amqtt", "--state-dir", str(tmp_path / "state"))
    assert out.returncode == 1
    assert "the amqtt broker is no longer supported" in out.stderr
    assert "sudo apt-get install mosquitto" in out.stderr
    assert not (tmp_path / "state").exists()
