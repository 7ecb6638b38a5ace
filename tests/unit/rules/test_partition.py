"""Splitting a site between rules processes by gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facility import topics
from facility.config_errors import ConfigError
from facility.site import Site, load_site
from rules.partition import Partition, partition_of

ROOT = Path(__file__).resolve().parents[3]


def three_buildings(tmp_path: Path) -> Site:
    def lift(name: str, port: int) -> dict[str, object]:
        return {"id": name, "type": "elevator", "profile": "elevator",
                "address": {"protocol": "modbus", "port": port}}

    raw = {"site": "estate", "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw-c"}, {"id": "gw-a"}, {"id": "gw-b"}],
           "buildings": [
               {"id": "a", "gateway": "gw-a", "devices": [lift("a-1", 1), lift("a-2", 2)]},
               {"id": "b", "gateway": "gw-b", "devices": [lift("b-1", 3)]},
               {"id": "c", "gateway": "gw-c", "devices": [lift("c-1", 4)]}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_site(path)


def test_the_whole_site_by_default(tmp_path: Path) -> None:
    part = partition_of(three_buildings(tmp_path))
    assert part.whole_site and part.gateways == ("gw-a", "gw-b", "gw-c")
    assert part.client_id() == "rules-estate"
    assert part.subscriptions() == [
        "facility/v1/estate/+/+/telemetry", "facility/v1/estate/+/+/status",
        "facility/v1/estate/+/status"]
    assert set(part.sources) == {"a-1", "a-2", "b-1", "c-1", "gw-a", "gw-b", "gw-c"}
    assert partition_of(three_buildings(tmp_path), ["gw-b", "gw-a", "gw-c"]).whole_site


def test_a_part_keeps_to_its_gateways_devices_and_topics(tmp_path: Path) -> None:
    part = partition_of(three_buildings(tmp_path), ["gw-c", "gw-a", "gw-a"])
    assert not part.whole_site and part.gateways == ("gw-a", "gw-c")
    assert part.sources == ["a-1", "a-2", "c-1", "gw-a", "gw-c"]
    assert part.client_id() == "rules-estate-gw-a+gw-c"
    subs = part.subscriptions()
    assert "facility/v1/estate/gw-a/+/telemetry" in subs
    assert "facility/v1/estate/gw-c/status" in subs
    assert not any("gw-b" in s or "/+/+/" in s for s in subs)
    # every topic of a device behind gw-a is covered, none of b-1's
    mine = topics.device_topic(topics.TopicKind.TELEMETRY, "estate", "gw-a", "a-2")
    theirs = topics.device_topic(topics.TopicKind.TELEMETRY, "estate", "gw-b", "b-1")
    assert mine.replace("/a-2/", "/+/") in subs and theirs.replace("/b-1/", "/+/") not in subs


def test_an_unknown_gateway_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        partition_of(three_buildings(tmp_path), ["gw-a", "gw-x"])
    assert "gw-x" in str(err.value) and "gw-a, gw-b, gw-c" in str(err.value)


def test_long_gateway_lists_get_a_short_stable_session_name() -> None:
    big = Partition("estate", tuple(f"gateway-{i:02d}" for i in range(10)), False, ())
    assert big.client_id().startswith("rules-estate-p") and len(big.client_id()) < 40
    assert big.client_id() == Partition("estate", big.gateways, False, ()).client_id()
    other = Partition("estate", big.gateways[:-1], False, ())
    assert other.client_id() != big.client_id()
