"""Rule state in the database (table ``rule_state``, jsonb per source and rule), so that the
timers running at a restart resume where they were (psycopg async)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from rules.engine_types import EngineState, RuleKey, RuleState, SaveRuleState


async def load_state(
    conn: psycopg.AsyncConnection[Any], sources: Collection[str], rule_ids: Collection[str]
) -> EngineState:
    """The saved state of the given sources' rules (others belong to other sites)."""
    cur = await conn.execute(
        "SELECT source, rule_id, state FROM rule_state"
        " WHERE source = ANY(%s) AND rule_id = ANY(%s)", (list(sources), list(rule_ids)),
    )
    rules: dict[RuleKey, RuleState] = {
        (source, rule_id): RuleState.from_json(raw) for source, rule_id, raw in await cur.fetchall()
    }
    return EngineState(rules)


async def save_rule_state(conn: psycopg.AsyncConnection[Any], act: SaveRuleState) -> None:
    await conn.execute(
        "INSERT INTO rule_state (source, rule_id, state, updated_at) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (source, rule_id) DO UPDATE"
        " SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
        (act.source, act.rule_id, Jsonb(act.state.to_json()), act.at),
    )
