"""Rules and procedures as data: loading, site overrides, checks against profiles."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facility.config_errors import ConfigError
from facility.procedures import load_procedures
from facility.site import RuleOverride, load_site
from rules.definitions import RuleDef, apply_overrides, check_rules, load_rules, site_rules

ROOT = Path(__file__).resolve().parents[3]


def test_builtin_rules() -> None:
    rules = {r.id: r for r in load_rules()}
    assert {"entrapment", "fire_alarm", "device_offline"} <= set(rules)
    e = rules["entrapment"]
    assert (e.on_delay_s, e.off_delay_s, e.priority, e.procedure) == (
        10, 2, "critical", "elevator_entrapment")
    assert rules["fire_alarm"].procedure == "fire_alarm_signal"
    assert rules["device_offline"].procedure is None and rules["device_offline"].priority == "high"


def test_site_override_changes_only_what_it_names_and_can_disable() -> None:
    rules = apply_overrides(load_rules(), {
        "entrapment": RuleOverride(on_delay_s=0.5),
        "gateway_offline": RuleOverride(enabled=False),
    }, "site.yaml")
    by_id = {r.id: r for r in rules}
    assert by_id["entrapment"].on_delay_s == 0.5 and by_id["entrapment"].off_delay_s == 2
    assert "gateway_offline" not in by_id


def test_override_of_unknown_rule_names_file_and_rule() -> None:
    with pytest.raises(ConfigError) as err:
        apply_overrides(load_rules(), {"entrapmant": RuleOverride()}, "sites/x.yaml")
    assert err.value.file == "sites/x.yaml" and "rules.entrapmant" in err.value.problems[0]


def test_demo_site_rules_check_against_profiles_and_procedures() -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    rules = site_rules(site, load_procedures(ROOT / "procedures"))
    assert {r.id for r in rules} >= {"entrapment", "fire_alarm"}


def test_condition_naming_a_point_the_profile_lacks_is_refused() -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    bad = RuleDef(id="x", condition="moving and speeed > 1", priority="low", message="x",
                  device_types=("elevator",), procedure="nope")
    with pytest.raises(ConfigError) as err:
        check_rules([bad], site, load_procedures(ROOT / "procedures"), "rules.yaml")
    text = str(err.value)
    assert "speeed is not a point of profile elevator" in text
    assert "no procedure nope" in text


def test_rule_file_errors_name_the_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [
        {"id": "a", "condition": "x.y", "priority": "low", "message": "m"},
        {"id": "b", "condition": "x", "priority": "urgent", "message": "m"},
    ]}), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_rules(path)
    assert err.value.file == str(path)
    assert any(p.startswith("rules[0]") and "Attribute" in p for p in err.value.problems)
    assert any(p.startswith("rules[1].priority") for p in err.value.problems)


def test_status_rule_may_only_use_offline_online() -> None:
    with pytest.raises(ValueError, match="offline, online"):
        RuleDef(id="s", input="device_status", condition="moving", priority="low", message="m")


def test_procedures_carry_the_seed_titles_steps_slas_and_escalation() -> None:
    procs = load_procedures(ROOT / "procedures")
    ent, fire = procs["elevator_entrapment"], procs["fire_alarm_signal"]
    assert ent.title == "电梯困人处理流程"
    assert fire.title == "消防报警信号处理流程"
    assert (ent.trade, fire.trade) == ("elevator", "fire")
    assert ent.sla.arrive_s == 1800 and ent.sla.acknowledge_s == 60
    assert [e.after_s for e in ent.escalation] == sorted(e.after_s for e in ent.escalation)
    assert all(s.action and s.action_en for p in procs.values() for s in p.steps)
    assert ent.steps[0].time_limit_s == 120
    assert ent.body()["steps"][0]["time_limit_s"] == 120


def test_procedure_errors_name_file_and_path(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "procedures" / "elevator_entrapment.yaml").read_text("utf-8"))
    raw["steps"][1]["time_limit"] = "soon"
    raw["steps"][2]["colour"] = "red"
    (tmp_path / "elevator_entrapment.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True),
                                                       encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_procedures(tmp_path)
    assert err.value.file.endswith("elevator_entrapment.yaml")
    assert any(p.startswith("steps[1].time_limit") for p in err.value.problems)
    assert any(p.startswith("steps[2].colour") for p in err.value.problems)


def test_procedure_id_must_match_its_file(tmp_path: Path) -> None:
    text = (ROOT / "procedures" / "fire_alarm_signal.yaml").read_text("utf-8")
    (tmp_path / "fire.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="does not match the file name"):
        load_procedures(tmp_path)
