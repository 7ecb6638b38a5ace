"""facility.scope: who sees which site and building; no I/O."""

from __future__ import annotations

import pytest

from facility.scope import Scope, ScopeError, site_sql, sql


def test_everything_by_default_and_listed_places_otherwise() -> None:
    centre = Scope.of(None)
    assert centre.sees("any", "b") and centre.sees_site("any") and centre.entries is None
    estate = Scope.of(["tsite", "usite/x"])
    assert estate.sees("tsite") and estate.sees("tsite", "a")
    assert estate.sees("usite", "x") and not estate.sees("usite", "y")
    assert not estate.sees("usite") and estate.sees_site("usite")  # a part of usite
    assert not estate.sees_site("other")
    assert estate.entries == ["tsite", "usite/x"]
    assert Scope.of([]).entries == [] and not Scope.of([]).sees_site("tsite")


def test_parameters_of_the_sql_condition() -> None:
    params = Scope.of(["usite/x", "tsite"]).params()
    assert params == {"scope_all": False, "scope_sites": ["tsite"], "scope_bldgs": ["usite/x"],
                      "scope_touch": ["tsite", "usite"]}
    assert "d.site_id || '/' || d.building" in sql("d.site_id", "d.building")
    assert "scope_touch" in site_sql("site_id")


@pytest.mark.parametrize("entry", ["", "TSITE", "a/b/c", "a b", "x'--"])
def test_a_bad_entry_is_refused(entry: str) -> None:
    with pytest.raises(ScopeError):
        Scope.of([entry])
