"""`facility ingest` subscribes plainly by default (a shared subscription loses messages
across a mosquitto restart) and shares only when told to."""

from __future__ import annotations

import pytest

from stack.cli import _share_group, build_parser


@pytest.mark.parametrize(("extra", "group"), [([], ""), (["--share-group", "ingest"], "ingest")])
def test_ingest_shares_its_subscription_only_when_told(
    extra: list[str], group: str
) -> None:
    args = build_parser().parse_args(["ingest", *extra])
    assert _share_group(args) == group
