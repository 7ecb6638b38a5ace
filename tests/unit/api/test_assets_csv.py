"""The asset ledger's CSV (no I/O but reading the repository's files): the demo's ledger
(sites/demo-assets.csv) imports whole for the demo site; bad files are refused with line
numbers and nothing half-read."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from api.assets import CsvProblem, parse_csv, to_csv
from facility.site import load_site

ROOT = Path(__file__).resolve().parents[3]


def test_the_demo_ledger_covers_every_demo_device() -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    rows = parse_csv((ROOT / "sites" / "demo-assets.csv").read_text("utf-8"), set(site.devices))
    assert sorted(d for d, _ in rows) == sorted(site.devices)
    lift = dict(rows)["a-elevator-1"]
    assert lift.registration_code == "31103301002012080012"
    assert lift.inspection_due == date(2027, 1, 15)


def test_problems_are_reported_by_line_and_the_round_trip_keeps_values() -> None:
    with pytest.raises(CsvProblem) as err:
        parse_csv("device,installed_on\nx,2020-01-01\ny,someday\ny,\n", {"y"})
    assert err.value.problems[0] == "line 2: device 'x' is not a device of the site"
    assert err.value.problems[1].startswith("line 3: installed_on:")
    rows = parse_csv("device,model,notes\ny,M1,\"a, b\"\n", None)
    assert rows[0][1].notes == "a, b"
    from api.assets import AssetOut
    text = to_csv([AssetOut(device="y", updated_at=None, updated_by=None,
                            **rows[0][1].model_dump())])
    again = parse_csv(text, None)
    assert again == rows
