"""MQTT v1 message models (DESIGN.md, "MQTT contract"); no I/O.

Every payload that crosses the broker is one of these pydantic models. Consumers parse with
``parse_*`` helpers that raise ``MessageError`` with a reason fit for a dead-letter row."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import pydantic
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
)

Value = bool | int | float | str
Quality = Literal["good", "bad", "stale"]
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_STRING_VALUE = 256


class MessageError(ValueError):
    """A payload that breaks the contract; ``reason`` is short and stored with the payload."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    ts: AwareDatetime

    @field_validator("ts")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    @field_serializer("ts")
    def _rfc3339(self, v: datetime) -> str:
        return v.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Telemetry(_Message):
    seq: int = Field(ge=0)
    session: str = Field(min_length=1, max_length=64)
    points: dict[str, Value]
    quality: dict[str, Quality] = {}
    historical: bool = False
    # optional, after v1's first fields: what a device reported of a point's own state
    # (BACnet status flags and reliability, "fault,open-loop"); consumers may ignore it.
    # Malformed flags never cost the message: the entries that break the contract are
    # dropped and ``flags_error`` says why.
    flags: dict[str, str] | None = None

    @field_validator("flags", mode="wrap")
    @classmethod
    def _lenient_flags(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # a wrap validator on the field alone: the rest of the message keeps pydantic's
        # JSON fast path (a model "before" validator makes every message 2.5x slower)
        kept, problem = check_flags(v)
        return handler(kept) if problem is None else RefusedFlags(kept or {}, problem)

    @property
    def flags_error(self) -> str | None:
        """Why some of the message's flags were dropped (None: none were)."""
        return self.flags.problem if isinstance(self.flags, RefusedFlags) else None

    @field_validator("points")
    @classmethod
    def _finite(cls, v: dict[str, Value]) -> dict[str, Value]:
        for name, value in v.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"point {name} is {value}, not a finite number")
            if isinstance(value, str) and len(value) > MAX_STRING_VALUE:
                raise ValueError(f"point {name} is a string over {MAX_STRING_VALUE} chars")
        return v


class RefusedFlags(dict[str, str]):
    """The flags of a message that kept only its valid entries, and why the others went."""

    def __init__(self, kept: dict[str, str], problem: str) -> None:
        super().__init__(kept)
        self.problem = problem


def check_flags(flags: object) -> tuple[dict[str, str] | None, str | None]:
    """Telemetry's ``flags`` as the contract has them (an object of short strings without
    NUL, by point name), and why the entries left out were refused (None: nothing was)."""
    if flags is None:
        return None, None
    if not isinstance(flags, dict):
        return None, f"flags is a JSON {_json_type(flags)}, not an object"
    kept: dict[str, str] = {}
    refused: list[str] = []
    for name, words in flags.items():
        if not isinstance(words, str):
            refused.append(f"flags of point {name} is a JSON {_json_type(words)}, not a string")
        elif len(words) > MAX_STRING_VALUE:
            refused.append(f"flags of point {name} over {MAX_STRING_VALUE} chars")
        elif "\x00" in words:
            refused.append(f"flags of point {name} contain a NUL character")
        else:
            kept[name] = words
    return kept or None, "; ".join(refused) if refused else None


def _json_type(v: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
             dict: "object", type(None): "null"}
    return names.get(type(v), type(v).__name__)


class PointMeta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    unit: str = ""
    tags: tuple[str, ...] = ()
    enum: dict[int, str] | None = None


class Birth(_Message):
    session: str
    device_type: str
    profile: str
    profile_version: int
    building: str
    points: dict[str, PointMeta]
    values: dict[str, Value] = {}


class DeviceStatus(_Message):
    state: Literal["online", "offline"]
    reason: str = ""


class GatewayStatus(_Message):
    state: Literal["online", "offline"]
    session: str


class AlarmEvent(_Message):
    """Alarm and work-order lifecycle events published by rules on facility/v1/{site}/alarms."""

    event: str
    alarm_id: int | None = None
    work_order_id: int | None = None
    device: str | None = None
    alarm_type: str | None = None
    state: str | None = None
    priority: str | None = None
    detail: dict[str, Any] = {}
    # the outbox id (events.id) the relay published it under: consumers de-duplicate by it
    event_id: int | None = None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], payload: bytes) -> M:
    """Decode and validate a payload; MessageError says why it was refused."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MessageError(f"payload is a JSON {type(raw).__name__}, not an object")
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "payload"
        raise MessageError(f"{loc}: {first['msg']}") from None


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json(exclude_none=True).encode()


def utcnow() -> datetime:
    return datetime.now(UTC)
