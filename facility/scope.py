"""Who sees what: a user's scope is the whole portfolio (the monitoring centre), or a set of
sites and of buildings within sites. ``Scope`` is a pure value (no I/O); its ``sql`` and
``site_sql`` give a WHERE fragment with named parameters (``scope_params``) that the API adds
to every query, so that what lies outside a user's scope is never read at all (the API
answers 404 for it, as for what does not exist). A scope entry is written ``site`` (the whole
site) or ``site/building``; the database keeps them in ``user_scopes`` (migration 0014) and the
``users.all_sites`` flag."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, LiteralString

ENTRY = re.compile(r"^[a-z0-9_-]{1,64}(/[a-z0-9_-]{1,64})?$")


class ScopeError(ValueError):
    def __init__(self, entry: str) -> None:
        self.entry = entry
        super().__init__(f"scope entry {entry!r} is not 'site' or 'site/building'")


@dataclass(frozen=True, slots=True)
class Scope:
    """``all_sites``, or the listed ``sites`` and ``buildings`` ('site/building')."""

    all_sites: bool = True
    sites: frozenset[str] = field(default_factory=frozenset)
    buildings: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, entries: list[str] | None) -> Scope:
        """None: everything; else the entries ('site' or 'site/building')."""
        if entries is None:
            return cls()
        for entry in entries:
            if not ENTRY.match(entry):
                raise ScopeError(entry)
        return cls(all_sites=False, sites=frozenset(e for e in entries if "/" not in e),
                   buildings=frozenset(e for e in entries if "/" in e))

    @property
    def entries(self) -> list[str] | None:
        """The inverse of ``of``: None for everything, else the sorted entries."""
        return None if self.all_sites else sorted(self.sites | self.buildings)

    @property
    def touched_sites(self) -> frozenset[str]:
        """Sites the user sees at least part of (their rosters, reports and notices)."""
        return self.sites | {b.split("/", 1)[0] for b in self.buildings}

    def sees(self, site: str, building: str | None = None) -> bool:
        if self.all_sites or site in self.sites:
            return True
        return building is not None and f"{site}/{building}" in self.buildings

    def sees_site(self, site: str) -> bool:
        return self.all_sites or site in self.touched_sites

    def params(self) -> dict[str, Any]:
        """The named parameters of ``sql`` and ``site_sql``."""
        return {"scope_all": self.all_sites, "scope_sites": sorted(self.sites),
                "scope_bldgs": sorted(self.buildings), "scope_touch": sorted(self.touched_sites)}


def sql(site: LiteralString, building: LiteralString) -> LiteralString:
    """A condition true for rows of (site, building) columns in the scope."""
    return (f"(%(scope_all)s OR {site} = ANY(%(scope_sites)s::text[])"
            f" OR ({site} || '/' || {building}) = ANY(%(scope_bldgs)s::text[]))")


def site_sql(site: LiteralString) -> LiteralString:
    """A condition true for rows of a site the scope touches (site-wide records)."""
    return f"(%(scope_all)s OR {site} = ANY(%(scope_touch)s::text[]))"
