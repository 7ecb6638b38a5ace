"""Who is on call: a pure function of the roster and now (Asia/Shanghai by default)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from facility.config_errors import ConfigError
from facility.procedures import load_procedures
from facility.site import load_site
from rules.dispatch.config import DispatchConfig, load_dispatch
from rules.dispatch.roster import assignee, on_call

ROOT = Path(__file__).resolve().parents[3]
CONFIG = DispatchConfig.model_validate({
    "site": "demo",
    "staff": [{"username": u} for u in ("day", "night", "weekend", "backup", "boss")],
    "rosters": {
        "elevator": {
            "shifts": [
                {"name": "day", "days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00",
                 "end": "20:00", "on_call": ["day"]},
                {"name": "weekend", "days": ["sat", "sun"], "start": "08:00", "end": "20:00",
                 "on_call": ["weekend"]},
                {"name": "night", "days": "all", "start": "20:00", "end": "08:00",
                 "on_call": ["night"]},
            ],
            "backup": ["backup"],
        },
        "boss_only": {"backup": ["boss"]},
        "nobody": {"shifts": [{"name": "x", "days": ["mon"], "start": "09:00", "end": "10:00",
                               "on_call": ["day"]}]},
    },
})


def shanghai(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    """A Shanghai wall-clock time as an aware UTC datetime."""
    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


@pytest.mark.parametrize(("when", "who", "shift"), [
    (shanghai(2025, 3, 5, 9), "day", "day"),            # Wednesday 09:00
    (shanghai(2025, 3, 5, 19, 59), "day", "day"),
    (shanghai(2025, 3, 5, 20), "night", "night"),       # Wednesday 20:00
    (shanghai(2025, 3, 6, 7, 59), "night", "night"),    # Thursday 07:59: Wednesday's night
    (shanghai(2025, 3, 8, 10), "weekend", "weekend"),   # Saturday
    (shanghai(2025, 3, 10, 3), "night", "night"),       # Monday 03:00: Sunday's night shift
])
def test_the_shift_covering_now_gives_the_assignee(when: datetime, who: str, shift: str) -> None:
    oc = assignee(CONFIG, "elevator", when)
    assert oc is not None
    assert (oc.username, oc.shift) == (who, shift)
    assert oc.since is not None and oc.until is not None
    assert oc.since <= when < oc.until


def test_overnight_window_spans_midnight_in_local_time() -> None:
    oc = assignee(CONFIG, "elevator", shanghai(2025, 3, 6, 2))
    assert oc is not None
    assert oc.since == shanghai(2025, 3, 5, 20)
    assert oc.until == shanghai(2025, 3, 6, 8)


def test_backups_follow_the_people_on_shift() -> None:
    people = on_call(CONFIG, "elevator", shanghai(2025, 3, 5, 9))
    assert [(p.username, p.shift) for p in people] == [("day", "day"), ("backup", "backup")]


def who(config: DispatchConfig, roster: str, when: datetime) -> str | None:
    oc = assignee(config, roster, when)
    return None if oc is None else oc.username


def test_nobody_on_shift_falls_back_to_the_backup_or_none() -> None:
    assert who(CONFIG, "boss_only", shanghai(2025, 3, 5, 9)) == "boss"
    assert who(CONFIG, "nobody", shanghai(2025, 3, 5, 11)) is None
    assert who(CONFIG, "nobody", shanghai(2025, 3, 3, 9, 30)) == "day"  # Monday 09:30
    assert who(CONFIG, "no-such-roster", shanghai(2025, 3, 5, 9)) is None


def test_time_zone_is_the_configs() -> None:
    utc_config = CONFIG.model_copy(update={"timezone": "UTC"})
    # 09:00 in Shanghai is 01:00 UTC: the night shift in a UTC roster
    assert who(utc_config, "elevator", shanghai(2025, 3, 5, 9)) == "night"


def test_the_demo_dispatch_file_loads() -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    d = load_dispatch(ROOT / "sites" / "demo-dispatch.yaml", site,
                      load_procedures(ROOT / "procedures"))
    assert {"elevator", "electrical", "plumbing", "fire", "general"} <= set(d.config.rosters)
    assert "elevator_half_monthly" in d.checklists


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_mistakes_are_refused_with_file_and_path(tmp_path: Path) -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    procedures = load_procedures(ROOT / "procedures")
    path = _write(tmp_path, """
site: demo
staff: [{username: a}]
rosters:
  elevator:
    shifts: [{name: d, start: "08:00", end: "20:00", on_call: [ghost]}]
    channels: [nowhere]
channels: {}
""")
    with pytest.raises(ConfigError) as err:
        load_dispatch(path, site, procedures)
    text = str(err.value)
    assert str(path) in text
    assert "rosters.elevator.shifts[0].on_call: ghost is not in staff" in text
    assert "rosters.elevator.channels: no channel nowhere" in text
    assert "rosters: no roster for trade fire" in text


def test_bad_values_name_their_entry(tmp_path: Path) -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    path = _write(tmp_path, """
site: demo
timezone: Mars/Olympus
staff: [{username: a, email: not-an-address}]
rosters:
  elevator:
    shifts: [{name: d, days: [funday], start: "25:00", end: "20:00", on_call: [a]}]
""")
    with pytest.raises(ConfigError) as err:
        load_dispatch(path, site, {})
    text = str(err.value)
    assert "timezone" in text and "staff[0].email" in text
    assert "rosters.elevator.shifts[0].days" in text and "rosters.elevator.shifts[0].start" in text
