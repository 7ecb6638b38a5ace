"""Pure parts of the API hardening: the throttling rule, the settings' checks and the security
headers added to a response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from api.security_headers import CSP, headers_for
from api.settings import ApiSettings
from api.sign_in_throttle import ThrottlePolicy

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def test_delays_double_from_the_free_failures_then_cap_then_lock() -> None:
    policy = ThrottlePolicy()  # the defaults: 3 free, 60 s cap, lock at 10 for 900 s
    delays = [policy.after("user", n, NOW) for n in range(1, 11)]
    assert delays[:2] == [(None, None), (None, None)]
    assert [(d - NOW).total_seconds() for d, _ in delays[2:9] if d] == [1, 2, 4, 8, 16, 32, 60]
    assert delays[9] == (None, NOW + timedelta(seconds=900))


def test_an_address_has_its_own_higher_thresholds() -> None:
    policy = ThrottlePolicy()
    assert policy.after("address", 9, NOW) == (None, None)
    assert policy.after("address", 10, NOW) == (NOW + timedelta(seconds=1), None)
    assert policy.after("address", 50, NOW)[1] == NOW + timedelta(seconds=900)


def test_settings_refuse_a_lock_before_the_delays() -> None:
    with pytest.raises(ValidationError, match="a lock must come after"):
        ApiSettings(sign_in_free_failures_user=5, sign_in_lock_after_user=5)
    settings = ApiSettings(sign_in_lock_s=60, token_ttl_s=3600)
    assert settings.throttle().lock_s == 60 and settings.token_ttl == timedelta(hours=1)


def test_headers_are_added_and_a_routes_own_header_is_kept() -> None:
    got = dict(headers_for("/api/v1/me", [(b"content-type", b"application/json")]))
    assert got[b"content-security-policy"] == CSP.encode()
    assert got[b"x-frame-options"] == b"DENY"
    assert got[b"x-content-type-options"] == b"nosniff"
    assert got[b"referrer-policy"] == b"no-referrer"
    assert got[b"cache-control"] == b"no-store"
    stream = dict(headers_for("/api/v1/stream", [(b"cache-control", b"no-cache")]))
    assert stream[b"cache-control"] == b"no-cache"
    page = dict(headers_for("/", []))
    assert b"cache-control" not in page
    assert b"'unsafe-inline'" not in page[b"content-security-policy"]
    assert b"'unsafe-inline'" not in dict(headers_for("/docs", []))[
        b"content-security-policy"].split(b"style-src")[0]
