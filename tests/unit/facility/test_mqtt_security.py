"""MQTT login and TLS settings, no I/O but temporary files: URLs, endpoint and settings
validation, the CONNECT packet's login, the words for a refusal, mosquitto's password hash
and the ACL of a site."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from facility.mqtt_endpoint import (
    MqttEndpoint,
    MqttUrl,
    connack_reason,
    failure_reason,
    refused_login,
)
from facility.mqtt_session import connect_packet
from facility.settings import CommonSettings, check_mqtt_endpoint
from facility.site import load_site
from stack.broker_config import acl_text, identities, password_hash

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("url", "host", "port", "tls", "loopback"), [
    ("mqtt://127.0.0.1:1883", "127.0.0.1", 1883, False, True),
    ("mqtt://broker.example.com", "broker.example.com", 1883, False, False),
    ("mqtts://broker.example.com", "broker.example.com", 8883, True, False),
    ("mqtts://localhost:18883/", "localhost", 18883, True, True),
    ("mqtt://[::1]:1884", "::1", 1884, False, True),
    ("mqtt://10.0.0.5:1883", "10.0.0.5", 1883, False, False),
])
def test_urls_say_whether_tls_and_whether_loopback(
    url: str, host: str, port: int, tls: bool, loopback: bool,
) -> None:
    parsed = MqttUrl.parse(url)
    assert (parsed.host, parsed.port, parsed.tls, parsed.is_loopback) == (host, port, tls,
                                                                          loopback)
    assert MqttUrl.parse(str(parsed)) == parsed


@pytest.mark.parametrize("url", ["http://x:1", "mqtt://", "mqtts://h:99999", "ssl://h:8883"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        MqttUrl.parse(url)


def test_the_password_never_shows_in_a_repr_or_a_description() -> None:
    ep = MqttEndpoint(MqttUrl.parse("mqtts://b:8883"), "gw", SecretStr("hunter2"))
    assert "hunter2" not in repr(ep) and "hunter2" not in ep.describe()
    assert ep.describe() == "mqtts://b:8883 as gw" and ep.password_text() == "hunter2"


def test_contradictory_endpoints_are_refused() -> None:
    with pytest.raises(ValueError, match="needs a user name"):
        MqttEndpoint(MqttUrl.parse("mqtt://b"), None, SecretStr("x"))
    with pytest.raises(ValueError, match="use mqtts://"):
        MqttEndpoint(MqttUrl.parse("mqtt://b"), ca_file=Path("ca.crt"))
    with pytest.raises(ValueError, match="needs its certificate"):
        MqttEndpoint(MqttUrl.parse("mqtts://b"), key_file=Path("k.pem"))


def test_a_tls_endpoint_checks_the_certificate_and_the_host_name() -> None:
    ctx = MqttEndpoint(MqttUrl.parse("mqtts://b")).ssl_context()
    assert ctx is not None and ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert MqttEndpoint(MqttUrl.parse("mqtt://b")).ssl_context() is None


def test_settings_read_the_login_from_the_environment_and_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("")
    monkeypatch.setenv("FACILITY_MQTT_URL", "mqtts://broker:8883")
    monkeypatch.setenv("FACILITY_MQTT_USERNAME", "ingest.demo")
    monkeypatch.setenv("FACILITY_MQTT_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("FACILITY_MQTT_CA_FILE", str(ca))
    ep = CommonSettings().mqtt_endpoint()
    assert (ep.username, ep.password_text(), ep.ca_file, ep.url.tls) == (
        "ingest.demo", "s3cret", ca, True)
    monkeypatch.setenv("FACILITY_MQTT_PASSWORD", "other")
    with pytest.raises(ValidationError, match="not both"):
        CommonSettings()
    monkeypatch.delenv("FACILITY_MQTT_PASSWORD")
    monkeypatch.setenv("FACILITY_MQTT_URL", "mqtt://broker:1883")
    with pytest.raises(ValidationError, match="use mqtts://"):
        CommonSettings()
    monkeypatch.setenv("FACILITY_MQTT_URL", "mqtts://broker:8883")
    monkeypatch.delenv("FACILITY_MQTT_USERNAME")
    with pytest.raises(ValidationError, match="needs FACILITY_MQTT_USERNAME"):
        CommonSettings()
    monkeypatch.setenv("FACILITY_MQTT_USERNAME", "x")
    monkeypatch.setenv("FACILITY_MQTT_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="not a readable file"):
        CommonSettings()


def test_the_connect_packet_carries_the_login() -> None:
    packet = connect_packet("ingest-x", v5=False, keepalive_s=30, receive_maximum=1,
                            clean=False, username="ingest.demo", password="pw")
    assert packet[9] == 0x80 | 0x40  # user name and password flags, clean session off
    assert packet.endswith(b"\x00\x08ingest-x\x00\x0bingest.demo\x00\x02pw")
    anonymous = connect_packet("i", v5=True, keepalive_s=30, receive_maximum=1, clean=False)
    assert anonymous[9] == 0


def test_refusals_are_worded_for_a_duty_engineer() -> None:
    ep = MqttEndpoint(MqttUrl.parse("mqtts://b"), "gw", SecretStr("x"), Path("ca.crt"))
    assert connack_reason(0x86, v5=True) == "bad user name or password (CONNACK code 134)"
    assert connack_reason(5, v5=False) == "not authorized (CONNACK code 5)"
    assert refused_login(ep, "not authorized").startswith("refused the login of user gw")
    expired = ssl.SSLCertVerificationError(1, "x")
    expired.verify_message = "certificate has expired"
    assert failure_reason(expired, ep) == ("TLS: the broker's certificate is not accepted: "
                                           "certificate has expired (CA file ca.crt)")
    unknown = socket.gaierror(-2, "Name or service not known")
    assert failure_reason(unknown, ep) == "host name b not found (Name or service not known)"
    plain = MqttEndpoint(MqttUrl.parse("mqtt://b"))
    assert "use mqtts://" in failure_reason(ConnectionResetError(104, "reset"), plain)


def test_password_hash_is_mosquittos_pbkdf2_sha512_format() -> None:
    # written by mosquitto_passwd 2.0.11 for alice / secret
    known = ("$7$101$nMdEHpR89EQiWbp4$KdaGZWTHiUAgvRNyxDMcl2oEzaXs5IciscuIC1HIFg+XRBMKTRu3SG"
             "DWWnAd9IRTiidd0J/7KkwXwfFUeywoLg==")
    salt = bytes.fromhex("9cc7441e947cf4442259ba78")
    assert password_hash("secret", salt=salt) == known
    assert password_hash("secret") != password_hash("secret")  # a fresh salt each time


def test_the_acl_confines_each_gateway_and_lets_only_rules_write_alarms() -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    by_user = {i.username: i for i in identities(site)}
    assert by_user["gateway.demo.gw-a"].write == ("facility/v1/demo/gw-a/#",)
    assert by_user["gateway.demo.gw-a"].read == ()
    assert by_user["ingest.demo"].write == () and by_user["ingest.demo"].read == (
        "facility/v1/demo/#",)
    assert by_user["rules.demo"].write == ("facility/v1/demo/alarms",)
    text = acl_text(list(by_user.values()))
    assert "user gateway.demo.gw-b\ntopic write facility/v1/demo/gw-b/#\n" in text
    assert "pattern" not in text and "topic facility" not in text  # no read-write grants


def test_plain_text_off_loopback_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    check_mqtt_endpoint(MqttEndpoint(MqttUrl.parse("mqtt://127.0.0.1:1883")))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    check_mqtt_endpoint(MqttEndpoint(MqttUrl.parse("mqtt://10.1.2.3:1883"), "gw"))
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith("MQTT mqtt://10.1.2.3:1883 is plain text over the network")
