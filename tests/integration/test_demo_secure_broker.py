"""`facility demo` with its own broker, as `make demo` runs it: mosquitto listens only with
TLS (a CA and server certificate made in the state directory on the first run), every
service logs in under its own identity, and the alarms still come through. And the demo's
certificate authority: made once, kept, the server certificate renewed near its end."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from facility.ports import free_port
from stack.broker_config import gateway_user, ingest_user, rules_user
from stack.embedded.tls import ensure_demo_pki, issue, read_pem, write_pem
from tests.integration.chain_support import poll, query
from tests.integration.demo_support import PASSWORD, write_scenario, write_site


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_demo_broker_speaks_tls_only_and_every_service_logs_in(
    tmp_path: Path, database_url: str, site_id: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACILITY_MQTT")} | {
        "FACILITY_DATABASE_URL": database_url, "FACILITY_DEMO_PASSWORD": PASSWORD,
        "HOME": str(tmp_path)}
    site = write_site(tmp_path, site_id)
    scenario = write_scenario(tmp_path, [
        {"at": "5s", "device": "a-elevator-2", "fault": "entrapment", "duration": "60s"}])
    state = tmp_path / "state"
    log_path = state / "broker" / "mosquitto.log"
    with open(tmp_path / "demo.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stack.cli", "demo", "--site", str(site), "--scenario",
             str(scenario), "--port", str(free_port()), "--state-dir", str(state)],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        poll(lambda: query(database_url, "SELECT 1 FROM alarms WHERE alarm_type = "
                                         "'entrapment'"), 150, "the entrapment alarm")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
        print((tmp_path / "demo.log").read_text(errors="replace")[-20000:])
    assert code == 0
    conf = (state / "broker" / "mosquitto.conf").read_text().splitlines()
    assert len([line for line in conf if line.startswith("listener")]) == 1  # TLS only
    assert "allow_anonymous false" in conf
    assert any(line.startswith("certfile ") for line in conf)
    broker_log = log_path.read_text()
    logins = [line for line in broker_log.splitlines() if "New client connected" in line]
    assert logins and all(" u'" in line for line in logins), logins
    assert {line.rsplit("u'", 1)[1].rstrip("').") for line in logins} == {
        gateway_user(site_id, "gw-a"), ingest_user(site_id), rules_user(site_id)}
    assert "failed" not in broker_log and "not authorised" not in broker_log
    demo_log = (tmp_path / "demo.log").read_text()
    assert "(TLS, one login per service" in demo_log
    for secret in (state / "broker" / "auth" / "credentials").iterdir():
        assert secret.read_text().strip() not in demo_log


def test_the_demo_ca_is_made_once_and_the_server_certificate_renewed_near_its_end(
    tmp_path: Path,
) -> None:
    first = ensure_demo_pki(tmp_path)
    ca_pem, cert_pem = first.ca_file.read_bytes(), first.cert_file.read_bytes()
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    assert first.key_file.stat().st_mode & 0o077 == 0
    ca = read_pem(first.ca_file, tmp_path / "ca.key")
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    again = ensure_demo_pki(tmp_path)
    assert again == first and first.ca_file.read_bytes() == ca_pem
    assert first.cert_file.read_bytes() == cert_pem  # kept
    ending = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    write_pem(issue(ca, "facility-broker", hosts=("127.0.0.1", "::1", "localhost"),
                    not_after=ending), first.cert_file, first.key_file)
    ensure_demo_pki(tmp_path)
    renewed = x509.load_pem_x509_certificate(first.cert_file.read_bytes())
    assert renewed.not_valid_after_utc > ending + dt.timedelta(days=300)
    assert first.ca_file.read_bytes() == ca_pem  # the same CA: clients keep trusting it
