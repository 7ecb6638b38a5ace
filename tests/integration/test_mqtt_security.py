"""Both MQTT clients against mosquitto with TLS, the site's logins and its ACL.

Every identity logs in over TLS; a gateway can publish only under its own subtree (a forged
message under another gateway or on the alarms topic never reaches a subscriber, and the
gateway logs the refusal), ingest only reads (with a shared subscription), rules write only
alarms. A wrong password, an anonymous client, an unknown CA, an expired or misnamed server
certificate, a missing client certificate and a plain connection to the TLS port are each
refused: the client logs one line naming the broker and the reason, and keeps retrying with
backoff (the repeat is at DEBUG), never connected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml

from facility import topics
from facility.mqtt import MqttClient, MqttError
from facility.mqtt_endpoint import MqttEndpoint
from facility.mqtt_session import MqttSession
from facility.ports import free_port
from facility.site import Site, load_site
from ingest.consumer import subscriptions
from stack.broker_config import gateway_user, ingest_user, rules_user
from tests.integration.secure_broker_support import (
    SecureBroker,
    new_ca,
    server_cert,
    start_secure_broker,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)
CLIENTS = ["paho", "session"]


def write_site(tmp_path: Path, site_id: str) -> Site:
    def modbus(name: str, typ: str) -> dict[str, object]:
        return {"id": name, "type": typ, "profile": typ,
                "address": {"protocol": "modbus", "port": free_port()}}

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "site": site_id, "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw-a"}, {"id": "gw-b"}],
        "buildings": [{"id": "a", "gateway": "gw-a", "devices": [modbus("a-lift", "elevator")]},
                      {"id": "b", "gateway": "gw-b",
                       "devices": [modbus("b-pumps", "pump_set")]}],
    }))
    return load_site(path)


@pytest.fixture
def site(tmp_path: Path, site_id: str) -> Site:
    return write_site(tmp_path, site_id)


@pytest.fixture
def secure(site: Site, tmp_path: Path) -> Iterator[SecureBroker]:
    with start_secure_broker(site, tmp_path / "secure") as broker:
        yield broker


@asynccontextmanager
async def connected(endpoint: MqttEndpoint, client_id: str) -> AsyncIterator[MqttClient]:
    async with MqttClient(endpoint, client_id) as client:
        await client.wait_connected(30)
        yield client


async def test_each_identity_gets_only_what_it_needs(secure: SecureBroker, site: Site) -> None:
    sid = site.id
    own = topics.device_topic(topics.TopicKind.TELEMETRY, sid, "gw-a", "a-lift")
    other = topics.device_topic(topics.TopicKind.TELEMETRY, sid, "gw-b", "b-pumps")
    ingest = MqttSession(secure.endpoint(ingest_user(sid)), f"ingest-{sid}",
                         subscriptions(sid, "ingest"))
    ingest_task = asyncio.create_task(ingest.run())
    try:
        async with connected(secure.endpoint(rules_user(sid)), "t-watch") as watch:
            await watch.subscribe(f"facility/v1/{sid}/#")
            await watch.wait_subscribed(30)
            await asyncio.wait_for(ingest.subscribed.wait(), 30)
            async with connected(secure.endpoint(gateway_user(sid, "gw-a")), "t-gw-a") as gw_a:
                await gw_a.publish(other, b"forged by gw-a", timeout_s=30)
                await gw_a.publish(topics.alarms(sid), b"forged alarm", timeout_s=30)
                await gw_a.publish(own, b"genuine", timeout_s=30)
                async with connected(secure.endpoint(ingest_user(sid)), "t-ingest-pub") as ing:
                    await ing.publish(own, b"forged by ingest", timeout_s=30)
                async with connected(secure.endpoint(rules_user(sid)), "t-rules-pub") as rules:
                    await rules.publish(other, b"forged by rules", timeout_s=30)
                    await rules.publish(topics.alarms(sid), b"alarm", timeout_s=30)
                # after every refusal, so that a forged message would have arrived before it
                await gw_a.publish(own, b"last", timeout_s=30)
                assert gw_a.publishes_refused == 2
            seen: list[tuple[str, bytes]] = []
            async with asyncio.timeout(30):
                async for m in watch.messages():
                    seen.append((m.topic, m.payload))
                    if m.payload == b"last":
                        break
        assert sorted(seen) == sorted([(own, b"genuine"), (topics.alarms(sid), b"alarm"),
                                       (own, b"last")])
        async with asyncio.timeout(30):  # ingest reads through its shared subscription
            while len(got := [d.payload for d in ingest.take()]) < 2:
                got += [d.payload for d in ingest.take()]
                await asyncio.sleep(0.1)
        assert got == [b"genuine", b"last"]
    finally:
        ingest_task.cancel()
        await asyncio.gather(ingest_task, return_exceptions=True)
        await ingest.close()
    log = secure.log()
    assert "u'gateway." in log and "u'ingest." in log and "u'rules." in log


async def refusal(kind: str, endpoint: MqttEndpoint, caplog: pytest.LogCaptureFixture) -> str:
    """Run a client against ``endpoint`` until it has failed at least twice; its one
    WARNING line about the broker."""
    module = "facility.mqtt" if kind == "paho" else "facility.mqtt_session"
    caplog.set_level(logging.DEBUG, logger=module)

    def records(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == module and r.levelno == level and "MQTT broker" in r.getMessage()]

    async def retried() -> None:
        while not any("(again)" in m for m in records(logging.DEBUG)):  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    if kind == "paho":
        async with MqttClient(endpoint, "t-refused") as client:
            await asyncio.wait_for(retried(), 60)
            assert not client.connected.is_set()
            with pytest.raises(MqttError):
                await client.wait_connected(0.1)
    else:
        session = MqttSession(endpoint, "t-refused", ["x/#"], backoff_initial_s=0.2,
                              backoff_max_s=1.0)
        task = asyncio.create_task(session.run())
        try:
            await asyncio.wait_for(retried(), 60)
            assert not session.subscribed.is_set() and session.connections == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    [line] = records(logging.WARNING)
    assert line.startswith(f"MQTT broker {endpoint.url}: "), line
    assert line.endswith("retrying with backoff (up to 30 s)" if kind == "paho"
                         else "retrying with backoff (up to 1 s)"), line
    return line


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_wrong_password_is_refused(
    kind: str, secure: SecureBroker, site: Site, caplog: pytest.LogCaptureFixture,
) -> None:
    user = gateway_user(site.id, "gw-a")
    line = await refusal(kind, secure.endpoint(user, password="not-the-password"), caplog)
    assert f"refused the login of user {user}: " in line
    assert "bad user name or password" in line or "not authorized" in line, line
    assert "not-the-password" not in caplog.text


@pytest.mark.parametrize("kind", CLIENTS)
async def test_an_anonymous_client_is_refused(
    kind: str, secure: SecureBroker, caplog: pytest.LogCaptureFixture,
) -> None:
    line = await refusal(kind, secure.endpoint(None), caplog)
    assert "refused the login of an anonymous client: " in line
    assert "the broker requires a login" in line, line


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_broker_certificate_from_an_unknown_ca_is_refused(
    kind: str, secure: SecureBroker, site: Site, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, other_ca = new_ca(tmp_path, "other-ca")
    line = await refusal(kind, secure.endpoint(rules_user(site.id), ca_file=other_ca), caplog)
    assert "TLS: the broker's certificate is not accepted: " in line, line
    # OpenSSL's words depend on whether the broker sends its CA along
    assert ("self-signed certificate in certificate chain" in line
            or "unable to get local issuer certificate" in line), line
    assert line.endswith(f"(CA file {other_ca}); retrying with backoff (up to 30 s)"
                         if kind == "paho" else
                         f"(CA file {other_ca}); retrying with backoff (up to 1 s)"), line


@pytest.mark.parametrize("kind", CLIENTS)
async def test_an_expired_broker_certificate_is_refused(
    kind: str, site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with start_secure_broker(site, tmp_path / "expired", expired=True) as broker:
        line = await refusal(kind, broker.endpoint(rules_user(site.id)), caplog)
    assert "TLS: the broker's certificate is not accepted: certificate has expired" in line


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_certificate_for_another_host_is_refused(
    kind: str, site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with start_secure_broker(site, tmp_path / "misnamed",
                             hosts=("broker.example.com",)) as broker:
        line = await refusal(kind, broker.endpoint(rules_user(site.id)), caplog)
    assert "not accepted: IP address mismatch, certificate is not valid for '127.0.0.1' (" in line


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_plain_connection_to_the_tls_port_is_refused(
    kind: str, secure: SecureBroker, site: Site, caplog: pytest.LogCaptureFixture,
) -> None:
    plain = secure.url.replace("mqtts://", "mqtt://")
    line = await refusal(kind, secure.endpoint(rules_user(site.id), url=plain), caplog)
    assert line.startswith(f"MQTT broker {plain}: connection closed before the broker "
                           "answered the CONNECT (a TLS port spoken to in plain text? use "
                           "mqtts://)"), line


@pytest.mark.parametrize("kind", CLIENTS)
async def test_a_client_certificate_when_the_broker_requires_one(
    kind: str, site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    user = rules_user(site.id)
    with start_secure_broker(site, tmp_path / "mutual", require_certificate=True) as broker:
        cert = server_cert(broker.ca, tmp_path, "client-rules", hosts=(), client=True)
        with_cert = broker.endpoint(user, cert=cert)
        if kind == "paho":
            async with connected(with_cert, "t-mutual"):
                pass
        else:
            session = MqttSession(with_cert, "t-mutual", [f"facility/v1/{site.id}/#"])
            task = asyncio.create_task(session.run())
            try:
                await asyncio.wait_for(session.subscribed.wait(), 30)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await session.close()
        line = await refusal(kind, broker.endpoint(user), caplog)
    assert "TLS" in line or "connection closed" in line, line


async def test_an_mqtt_3_subscriber_gets_the_same_words(
    secure: SecureBroker, site: Site, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="facility.mqtt_session")
    session = MqttSession(secure.endpoint(ingest_user(site.id), password="wrong"), "t-v3",
                          ["x/#"], protocol="3.1.1", backoff_initial_s=0.2, backoff_max_s=1.0)
    task = asyncio.create_task(session.run())
    try:
        async with asyncio.timeout(60):
            while "(again)" not in caplog.text:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"refused the login of user {ingest_user(site.id)}: not authorized (CONNACK code 5)" \
        in line, line
