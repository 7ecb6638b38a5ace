"""The gateway on a simulated building network (network namespaces, private addresses that
exist only inside them): BACnet panels on a LAN, addressed by host and by device instance;
and across a router, found through a BBMD the gateway registers with as a foreign device.
Everything runs as processes: simulators, mosquitto, the gateway, mosquitto_sub."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from facility.profiles import BacnetProfile
from facility.site import Site, load_site
from tests.integration.field_support import (
    CLI,
    open_lab,
    panel,
    start_broker,
    start_gateway,
    start_simulators,
    status_of,
    subscribe,
    telemetry_of,
    wait_for,
    wait_log,
    write_site,
)
from tests.integration.netns_support import Lab, Netns

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from open_lab(tmp_path)


def test_gateway_polls_panels_on_the_lan_by_host_and_by_instance(
    lab: Lab, tmp_path: Path, site_id: str,
) -> None:
    gw, lan = lab.namespace("gw"), lab.namespace("lan")
    _, lan_if = lab.link(gw, "10.213.1.1/24", lan, "10.213.1.10/24")
    lab.add_address(lan, lan_if, "10.213.1.11/24")
    lab.add_address(lan, lan_if, "10.213.1.12/24")
    sim = write_site(tmp_path / "sim.yaml", site_id, [
        panel("p-host", 1001, host="10.213.1.10"), panel("p-inst", 1002, host="10.213.1.11")])
    gws = write_site(tmp_path / "gw.yaml", site_id, [
        panel("p-host", 1001, host="10.213.1.10"), panel("p-inst", 1002)],
        # polled, not COV (a silent COV panel: test_field_bacnet_cov.py)
        gateway={"bacnet": {"address": "10.213.1.1/24"}, "cov_lifetime_s": 0})
    sim_log = start_simulators(lab, lan, sim)
    start_broker(lab, gw)
    sub = subscribe(lab, gw, site_id)
    gw_log = start_gateway(lab, gw, gws)
    logs = [gw_log, sim_log]
    for device in ("p-host", "p-inst"):
        wait_for(sub, status_of(device, "online"), logs=logs)
        wait_for(sub, telemetry_of(device), logs=logs)
    text = gw_log.read_text()
    assert "BACnet/IP bound to 10.213.1.1/24 port 47808 (broadcast 10.213.1.255)" in text
    assert "(instance 1002) found at 10.213.1.11" in text
    # the panel known by its instance moves to another address: found again there
    lab.stop("simulators")
    wait_log(gw_log, "device instance 1002 stopped answering; looking for it again")
    wait_for(sub, status_of("p-inst", "offline"), logs=logs)  # before it answers elsewhere
    moved = write_site(tmp_path / "moved.yaml", site_id, [
        panel("p-host", 1001, host="10.213.1.10"), panel("p-inst", 1002, host="10.213.1.12")])
    start_simulators(lab, lan, moved, name="simulators-moved")
    wait_log(gw_log, "(instance 1002) found at 10.213.1.12")
    wait_for(sub, lambda topic, p: topic.endswith("/p-inst/status")
             and "recovered" in p.get("reason", ""), logs=logs)


def test_gateway_refuses_an_interface_it_does_not_have(
    lab: Lab, tmp_path: Path, site_id: str,
) -> None:
    gw = lab.namespace("gw")
    gws = write_site(tmp_path / "gw.yaml", site_id, [panel("p", 1001)],
                     gateway={"bacnet": {"interface": "eth7"}})
    r = gw.run(*CLI, "gateway", "--gateway", "gw-a", "--site", str(gws),
               "--mqtt-url", "mqtt://127.0.0.1:1", timeout_s=60)
    assert r.returncode == 2, r.stderr
    assert "gateways[0].bacnet.interface: interface eth7 does not exist" in r.stderr


def test_foreign_device_finds_a_panel_behind_a_router_through_a_bbmd(
    lab: Lab, tmp_path: Path, site_id: str,
) -> None:
    gw, router, lan = lab.namespace("gw"), lab.namespace("rt"), lab.namespace("lan")
    lab.link(gw, "10.213.2.1/24", router, "10.213.2.254/24")
    _, lan_if = lab.link(router, "10.213.1.254/24", lan, "10.213.1.10/24")
    lab.add_address(lan, lan_if, "10.213.1.5/24")
    lab.forward(router)
    lab.route(gw, "10.213.1.0/24", "10.213.2.254")
    lab.route(lan, "10.213.2.0/24", "10.213.1.254")
    sim = write_site(tmp_path / "sim.yaml", site_id, [panel("p-far", 1003, host="10.213.1.10")])
    gws = write_site(tmp_path / "gw.yaml", site_id, [panel("p-far", 1003)], gateway={
        "bacnet": {"address": "10.213.2.1/24",
                   "foreign_device": {"bbmd": "10.213.1.5:47808", "ttl_s": 30}}})
    bbmd_log = lab.spawn(lan, "bbmd", [sys.executable, "-m", "simulators.bbmd",
                                       "10.213.1.5/24"])
    sim_log = start_simulators(lab, lan, sim)
    start_broker(lab, gw)
    sub = subscribe(lab, gw, site_id)
    gw_log = start_gateway(lab, gw, gws)
    logs = [gw_log, sim_log, bbmd_log]
    wait_for(sub, status_of("p-far", "online"), logs=logs)
    wait_for(sub, telemetry_of("p-far"), logs=logs)
    wait_log(gw_log, "registration with BBMD 10.213.1.5:47808: registered")
    assert "(instance 1003) found at 10.213.1.10" in gw_log.read_text()


def test_discover_broadcasts_who_is_on_the_gateway_subnet(
    lab: Lab, tmp_path: Path, site_id: str,
) -> None:
    gw, lan = lab.namespace("gw"), lab.namespace("lan")
    _, lan_if = lab.link(gw, "10.213.1.1/24", lan, "10.213.1.10/24")
    for host in ("10.213.1.11/24", "10.213.1.12/24"):
        lab.add_address(lan, lan_if, host)
    sim = write_site(tmp_path / "sim.yaml", site_id, [
        panel(f"p{i}", 1000 + i, host=f"10.213.1.{10 + i}") for i in range(3)])
    gws = write_site(tmp_path / "gw.yaml", site_id, [],
                     gateway={"bacnet": {"interface": lab.interfaces[gw.name][0]}})
    sim_log = start_simulators(lab, lan, sim)
    wait_log(sim_log, "3 simulators of site")
    every = discover(gw, gws, tmp_path / "all", "--who-is")
    assert {d.config.address.model_dump()["host"] for d in every.devices.values()} == {
        "10.213.1.10", "10.213.1.11", "10.213.1.12"}
    first = next(iter(every.devices.values()))
    assert isinstance(first.profile, BacnetProfile)
    assert {p.name for p in first.profile.points} >= {"zone_1_alarm", "panel_state"}
    state = next(p for p in first.profile.points if p.name == "panel_state")
    assert state.enum == {1: "normal", 2: "alarm", 3: "trouble", 4: "silenced"}
    ranged = discover(gw, gws, tmp_path / "ranged", "--who-is", "1001-1002")
    assert sorted(d.config.address.model_dump()["device_instance"]
                  for d in ranged.devices.values()) == [1001, 1002]


def discover(ns: Netns, site: Path, out: Path, *args: str) -> Site:
    r = ns.run(*CLI, "gateway", "discover", "--site", str(site), "--gateway", "gw-a",
               "--out", str(out), "--timeout", "3", *args, timeout_s=120)
    assert r.returncode == 0, r.stderr
    assert "draft site with" in r.stderr, r.stderr
    return load_site(out / "site.yaml")


def test_gateway_polls_a_panel_behind_a_bacnet_router(
    lab: Lab, tmp_path: Path, site_id: str,
) -> None:
    gw, router, lan = lab.namespace("gw"), lab.namespace("rt"), lab.namespace("lan")
    lab.link(gw, "10.213.2.1/24", router, "10.213.2.254/24")
    lab.link(router, "10.213.1.254/24", lan, "10.213.1.10/24")  # no IP forwarding: BACnet
    sim = write_site(tmp_path / "sim.yaml", site_id, [panel("p-net2", 1004, host="10.213.1.10")])
    gws = write_site(tmp_path / "gw.yaml", site_id, [
        panel("p-net2", 1004, network=2, mac="10.213.1.10:47808")],
        gateway={"bacnet": {"address": "10.213.2.1/24"}})
    router_log = lab.spawn(router, "router", [sys.executable, "-m", "simulators.bacnet_router",
                                              "1=10.213.2.254/24", "2=10.213.1.254/24"])
    sim_log = start_simulators(lab, lan, sim)
    start_broker(lab, gw)
    sub = subscribe(lab, gw, site_id)
    gw_log = start_gateway(lab, gw, gws)
    logs = [gw_log, sim_log, router_log]
    wait_for(sub, status_of("p-net2", "online"), logs=logs)
    wait_for(sub, telemetry_of("p-net2"), logs=logs)
