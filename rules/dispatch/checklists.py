"""Preventive-maintenance checklists as data (maintenance/*.yaml): the items a scheduled work
order carries as its steps, with Chinese text and English. ``load_checklists`` reads and
validates a folder; a mistake is refused with the file and the path of the entry."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from facility.config_errors import ConfigError, load_model
from facility.procedures import Priority, Trade


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Item(_Strict):
    action: str = Field(min_length=1, description="Chinese text")
    action_en: str = Field(min_length=1)
    role: str = Field(default="technician", pattern=r"^[a-z][a-z0-9_]*$")
    required: bool = True


class Checklist(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str = Field(min_length=1)
    title_en: str = Field(min_length=1)
    source: str = ""
    trade: Trade
    priority: Priority = "low"
    items: tuple[Item, ...] = Field(min_length=1)


def load_checklist(path: Path) -> Checklist:
    checklist = load_model(path, Checklist)
    if checklist.id != path.stem:
        raise ConfigError(path, [f"id: {checklist.id} does not match the file name {path.name}"])
    return checklist


def load_checklists(directory: Path) -> dict[str, Checklist]:
    if not directory.is_dir():
        raise ConfigError(directory, ["not a folder of checklist files"])
    return {p.stem: load_checklist(p) for p in sorted(directory.glob("*.yaml"))}
