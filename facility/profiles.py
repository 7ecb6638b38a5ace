"""Device profiles: the point map of one device model (profiles/*.yaml); no I/O but reading
the YAML file.

A Modbus point names its table, address, data type, word/byte order, scale and offset; a
BACnet point names its object and property. Every point has a stable name, a unit and tags
that rules select on. Register counts come from one table so that decoders and encoders agree
on the layout."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from facility.config_errors import from_validation, read_yaml

POINT_NAME = r"^[a-z][a-z0-9_]*$"
EVENT_TAGS = frozenset({"state", "alarm", "fault"})


class ModbusTable(StrEnum):
    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"


class DataType(StrEnum):
    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"


REGISTER_COUNT: dict[DataType, int] = {
    DataType.BOOL: 1,
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
}


class WordOrder(StrEnum):
    """Byte order of the value as the device sends it: ABCD is big-endian words, big-endian
    bytes; CDAB swaps words; BADC swaps bytes in each word; DCBA is fully little-endian."""

    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


class EnumLabel(BaseModel):
    """What an enumerated value means, for people: Chinese and English."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zh: str = Field(min_length=1, max_length=80)
    en: str = Field(min_length=1, max_length=80)


class _Point(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=POINT_NAME)
    unit: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""
    label: str = Field(default="", max_length=80, description="display name in Chinese")
    label_en: str = Field(default="", max_length=80, description="display name in English")
    enum: dict[int, str] | None = None
    enum_labels: dict[int, EnumLabel] | None = Field(
        default=None, description="what each value means on the pages (zh, en); the codes in "
        "`enum` stay what rules and messages use")
    poll_class: Literal["fast", "normal", "slow"] = "normal"
    deadband: float = Field(default=0.0, ge=0)
    deadband_percent: float = Field(
        default=0.0, ge=0, le=100, description="change, in percent of the last value sent, "
        "below which the gateway does not report (instead of the absolute deadband)")

    @model_validator(mode="after")
    def _one_deadband(self) -> _Point:
        if self.deadband and self.deadband_percent:
            raise ValueError("give deadband (absolute) or deadband_percent, not both")
        return self

    @property
    def is_event(self) -> bool:
        """An alarm or state point: reported at once on any change, never dropped."""
        return getattr(self, "type", None) == "bool" or bool(EVENT_TAGS.intersection(self.tags))


class ModbusPoint(_Point):
    table: ModbusTable
    address: int = Field(ge=0, le=65535)
    type: DataType = DataType.UINT16
    order: WordOrder = WordOrder.ABCD
    length: int | None = Field(default=None, ge=1, le=120, description="registers, strings only")
    bit: int | None = Field(default=None, ge=0, le=15)
    scale: float = 1.0
    offset: float = 0.0
    invalid: int | None = Field(
        default=None, description="raw value the device sends for 'not available' (e.g. "
        "65535 or -32768); the point is then bad")

    @model_validator(mode="after")
    def _check_layout(self) -> ModbusPoint:
        bit_table = self.table in (ModbusTable.COIL, ModbusTable.DISCRETE)
        if bit_table and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.table} point must have type bool, not {self.type}")
        if self.type is DataType.STRING and self.length is None:
            raise ValueError("a string point needs length (registers)")
        if self.type is DataType.BOOL and not bit_table and self.bit is None:
            raise ValueError("a bool in a register table needs bit (0-15)")
        return self

    @property
    def count(self) -> int:
        """Registers (or bits) this point occupies."""
        if self.table in (ModbusTable.COIL, ModbusTable.DISCRETE):
            return 1
        if self.type is DataType.STRING:
            assert self.length is not None
            return self.length
        return REGISTER_COUNT[self.type]


BacnetObjectType = Literal[
    "binaryInput", "binaryValue", "analogInput", "analogValue", "multiStateInput",
    "multiStateValue",
]


class BacnetPoint(_Point):
    object_type: BacnetObjectType
    instance: int = Field(ge=0, le=4194302)
    property: Literal["presentValue"] = "presentValue"
    type: Literal["bool", "float", "int", "string"] = "float"


class ModbusProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field(pattern=r"^[a-z0-9_-]+$")
    version: int = 1
    protocol: Literal["modbus"]
    description: str = ""
    points: tuple[ModbusPoint, ...]

    @model_validator(mode="after")
    def _check_points(self) -> ModbusProfile:
        _unique_names(self.points)
        used: dict[tuple[ModbusTable, int, int | None], str] = {}
        for p in self.points:
            for reg in range(p.address, p.address + p.count):
                key = (p.table, reg, p.bit)
                if key in used:
                    raise ValueError(f"points {used[key]} and {p.name} overlap at {p.table} {reg}")
                used[key] = p.name
        return self


class BacnetProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field(pattern=r"^[a-z0-9_-]+$")
    version: int = 1
    protocol: Literal["bacnet"]
    description: str = ""
    points: tuple[BacnetPoint, ...]

    @model_validator(mode="after")
    def _check_points(self) -> BacnetProfile:
        _unique_names(self.points)
        seen: dict[tuple[str, int], str] = {}
        for p in self.points:
            key = (p.object_type, p.instance)
            if key in seen:
                raise ValueError(f"points {seen[key]} and {p.name} share {key[0]}:{key[1]}")
            seen[key] = p.name
        return self


Profile = Annotated[ModbusProfile | BacnetProfile, Field(discriminator="protocol")]
_ProfileAdapter: pydantic.TypeAdapter[ModbusProfile | BacnetProfile] = pydantic.TypeAdapter(
    Profile
)


def _unique_names(points: tuple[_Point, ...]) -> None:
    names: set[str] = set()
    for p in points:
        if p.name in names:
            raise ValueError(f"point name {p.name} appears twice")
        names.add(p.name)


def load_profile(path: Path) -> ModbusProfile | BacnetProfile:
    """Read and validate one profile file; ConfigError names the file and entry."""
    raw = read_yaml(path)
    try:
        return _ProfileAdapter.validate_python(raw)
    except pydantic.ValidationError as exc:
        raise from_validation(path, exc) from exc
