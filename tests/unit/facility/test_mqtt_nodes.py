"""A clustered broker's URLs, no I/O: the list is parsed once and refused when it mixes TLS
and plain or repeats a node; ``NodeCycle`` stays on a working node, moves on after a
failure, backs off only after a whole round failed, and says each failure once per node."""

from __future__ import annotations

import pytest

from facility.mqtt_endpoint import MqttEndpoint, MqttUrl
from facility.mqtt_nodes import NodeCycle
from facility.settings import CommonSettings

A, B, C = "mqtts://10.0.0.1:8883", "mqtts://10.0.0.2:8883", "mqtts://b3.example.com"


def test_a_list_of_nodes_is_parsed_in_order_with_spaces_allowed() -> None:
    urls = MqttUrl.parse_list(f"{A}, {B} ,{C}")
    assert [str(u) for u in urls] == [A, B, "mqtts://b3.example.com:8883"]
    assert MqttUrl.parse_list("mqtt://h") == (MqttUrl("h", 1883),)


@pytest.mark.parametrize(("text", "words"), [
    (f"{A},mqtt://10.0.0.2:1883", "mixes mqtt:// and mqtts://"),
    (f"{A},{B},{A}", "more than once"),
    (" , ", "no MQTT URL"),
    (f"{A},http://x:1", "not an MQTT URL"),
])
def test_bad_lists_are_refused_with_the_reason(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        MqttUrl.parse_list(text)


def test_an_endpoint_of_a_list_names_every_node_and_shares_one_login() -> None:
    ep = MqttEndpoint.of("mqtt://a:1,mqtt://b:2")
    assert [str(u) for u in ep.urls] == ["mqtt://a:1", "mqtt://b:2"]
    assert ep.describe() == "mqtt://a:1,mqtt://b:2 (anonymous)"
    with pytest.raises(ValueError, match="all TLS or all plain"):
        MqttEndpoint(MqttUrl.parse(A), others=(MqttUrl.parse("mqtt://x"),))
    with pytest.raises(ValueError, match="keepalive"):
        MqttEndpoint(MqttUrl.parse(A), keepalive_s=0)


def test_settings_take_a_list_and_the_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACILITY_MQTT_URL", "mqtt://10.0.0.1,mqtt://10.0.0.2:1884")
    monkeypatch.setenv("FACILITY_MQTT_KEEPALIVE_S", "4")
    monkeypatch.setenv("FACILITY_MQTT_CONNECT_TIMEOUT_S", "2.5")
    ep = CommonSettings().mqtt_endpoint()
    assert [str(u) for u in ep.urls] == ["mqtt://10.0.0.1:1883", "mqtt://10.0.0.2:1884"]
    assert (ep.keepalive_s, ep.connect_timeout_s) == (4, 2.5)
    monkeypatch.setenv("FACILITY_MQTT_URL", f"mqtt://10.0.0.1,{A}")
    with pytest.raises(ValueError, match="mixes"):
        CommonSettings()


def test_the_cycle_moves_on_after_a_failure_and_backs_off_after_a_round() -> None:
    nodes = NodeCycle(MqttUrl.parse_list(f"{A},{B},{C}"))
    assert nodes.current == MqttUrl.parse(A) and nodes.describe().endswith("(node 1 of 3)")
    assert nodes.failed("refused") and not nodes.round_failed
    nodes.advance()
    assert nodes.failed("refused") and not nodes.round_failed  # news for node 2 too
    nodes.advance()
    nodes.failed("timeout")
    assert nodes.round_failed  # three failures in a row: every node is down
    assert nodes.advance() == MqttUrl.parse(A)
    assert not nodes.failed("refused")  # node 1 said that already
    assert not nodes.round_failed
    nodes.connected()
    assert not nodes.round_failed
    assert nodes.failed("refused")  # forgotten once it worked


def test_a_single_broker_stays_itself() -> None:
    nodes = NodeCycle(MqttUrl.parse_list("mqtt://h:1"))
    assert nodes.advance() == nodes.current == MqttUrl.parse("mqtt://h:1")
    assert nodes.describe() == "mqtt://h:1" and not nodes.several
    nodes.failed("x")
    assert nodes.round_failed
    with pytest.raises(ValueError):
        NodeCycle([])
