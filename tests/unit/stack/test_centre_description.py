"""The centre description (stack/centre/description.py): a valid file loads with its
secrets path beside it; unknown machines, duplicate addresses, an even etcd membership and
Patroni timings that would demote a healthy leader are refused with the entry named."""

from __future__ import annotations

from pathlib import Path

import pytest

from facility.config_errors import ConfigError
from stack.centre.description import load_description

GOOD = """
name: centre
data_dir: /var/lib/facility-centre
machines:
  - {name: m1, address: 10.215.1.11}
  - {name: m2, address: 10.215.1.12}
  - {name: m3, address: 10.215.1.13}
database:
  machines: [m1, m2, m3]
  haproxy: {machines: [m1, m2]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "centre.yaml"
    path.write_text(text)
    return path


def test_a_good_description_loads_with_secrets_beside_it(tmp_path: Path) -> None:
    d = load_description(write(tmp_path, GOOD))
    assert d.address("m2") == "10.215.1.12"
    assert d.secrets == tmp_path / "secrets.yaml"
    assert d.database is not None and d.database.ttl_s == 10
    assert d.database.synchronous_mode_strict is False


@pytest.mark.parametrize(("change", "message"), [
    (("[m1, m2, m3]", "[m1, m2, m4]"), "unknown machines: m4"),
    (("10.215.1.13", "10.215.1.12"), "addresses must be unique"),
    (("[m1, m2, m3]", "[m1, m2, m3, m1]"), "odd number"),
    (("  haproxy:", "  ttl_s: 20\n  retry_timeout_s: 10\n  haproxy:"), "loop_wait_s"),
    (("name: centre", "name: centre\ncolour: red"), "colour"),
])
def test_bad_descriptions_are_refused(tmp_path: Path, change: tuple[str, str],
                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_description(write(tmp_path, GOOD.replace(*change)))
