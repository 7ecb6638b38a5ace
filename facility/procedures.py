"""Documented procedures as data (procedures/*.yaml): the steps a work order carries, its SLAs
and its escalation chain. ``load_procedures`` reads and validates a folder (a mistake is
refused with the file and the path of the entry); ``upsert_procedures`` stores them in the
``procedures`` table, bumping ``version`` when a body changes. Durations are written as
``30s``, ``5m``, ``2h`` and held in seconds. A step with a time limit starts its clock when
the order is ``raised`` or ``accepted`` (the step's ``clock``, else the procedure's
``step_clock``, default ``accepted``); a ``clock`` on a step without a time limit is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from facility.config_errors import ConfigError, load_model
from facility.durations import parse_duration

Trade = Literal["elevator", "electrical", "plumbing", "fire", "general"]
Priority = Literal["critical", "high", "medium", "low"]
StepClock = Literal["raised", "accepted"]
ROLE = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Seconds = Annotated[float, BeforeValidator(parse_duration)]


class Step(_Strict):
    role: str = Field(pattern=ROLE)
    action: str = Field(min_length=1, description="Chinese text of the procedure")
    action_en: str = Field(min_length=1)
    time_limit_s: Seconds | None = Field(default=None, alias="time_limit", gt=0)
    clock: StepClock | None = Field(default=None, description="when the time limit starts:"
                                    " the order raised or accepted; default step_clock")
    required: bool = True


class Sla(_Strict):
    acknowledge_s: Seconds = Field(alias="acknowledge", gt=0)
    accept_s: Seconds = Field(alias="accept", gt=0)
    arrive_s: Seconds = Field(alias="arrive", gt=0)
    resolve_s: Seconds = Field(alias="resolve", gt=0)


class EscalationLevel(_Strict):
    after_s: Seconds = Field(alias="after", gt=0)
    role: str = Field(pattern=ROLE)
    note: str = ""
    note_en: str = ""


class Procedure(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str = Field(min_length=1, description="Chinese title, e.g. 电梯困人处理流程")
    title_en: str = Field(min_length=1)
    source: str = ""
    trade: Trade
    priority: Priority
    steps: tuple[Step, ...] = Field(min_length=1)
    sla: Sla
    escalation: tuple[EscalationLevel, ...] = ()
    step_clock: StepClock = "accepted"

    @field_validator("steps")
    @classmethod
    def _clock_needs_a_limit(cls, v: tuple[Step, ...]) -> tuple[Step, ...]:
        for i, step in enumerate(v):
            if step.clock is not None and step.time_limit_s is None:
                raise ValueError(f"step {i}: a clock without a time_limit has nothing to time")
        return v

    def clock_of(self, step: Step) -> StepClock:
        """When this step's time limit starts counting."""
        return step.clock or self.step_clock

    @field_validator("escalation")
    @classmethod
    def _escalation_in_order(
        cls, v: tuple[EscalationLevel, ...]
    ) -> tuple[EscalationLevel, ...]:
        afters = [e.after_s for e in v]
        if afters != sorted(afters):
            raise ValueError("escalation levels must be in order of 'after'")
        return v

    def body(self) -> dict[str, Any]:
        """The whole document as JSON (durations in seconds, keys with their units)."""
        return self.model_dump(mode="json")


def load_procedure(path: Path) -> Procedure:
    """Read and validate one procedure file; its id must match the file name."""
    proc = load_model(path, Procedure)
    if proc.id != path.stem:
        raise ConfigError(path, [f"id: {proc.id} does not match the file name {path.name}"])
    return proc


def load_procedures(directory: Path | str) -> dict[str, Procedure]:
    """Every procedures/*.yaml file of a folder, keyed by id; ConfigError on any mistake."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(directory, ["not a folder of procedure files"])
    return {p.stem: load_procedure(p) for p in sorted(directory.glob("*.yaml"))}


_UPSERT = (
    "INSERT INTO procedures (id, title, title_en, trade, priority, body)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, title_en = EXCLUDED.title_en,"
    " trade = EXCLUDED.trade, priority = EXCLUDED.priority, body = EXCLUDED.body,"
    " version = procedures.version + 1, loaded_at = now()"
    " WHERE procedures.body IS DISTINCT FROM EXCLUDED.body"
)


async def upsert_procedures(
    conn: psycopg.AsyncConnection[Any], procedures: dict[str, Procedure]
) -> None:
    """Store every procedure; an unchanged one is left as it is, a changed one gets version+1."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            _UPSERT,
            [(p.id, p.title, p.title_en, p.trade, p.priority, Jsonb(p.body()))
             for p in procedures.values()],
        )
