"""YAML in, typed configuration out, or an error that names file, line and field.

A deployment is a directory of YAML files (``mqtt.yaml``, ``sites.yaml``,
``gateways.yaml``, ...) whose top-level keys are merged, or a single file.
Every node's position is remembered while parsing, so a pydantic error on
``gateways[3].devices[0].port`` is reported at the line that holds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from yujing.errors import ConfigError

Loc = tuple[str | int, ...]


class _Marks:
    """Where each node of the merged document came from: path -> (file, line)."""

    def __init__(self) -> None:
        self.at: dict[Loc, tuple[str, int]] = {}

    def locate(self, data: Any, loc: Iterable[str | int]) -> tuple[str, int, str]:
        """Resolve a validation ``loc`` against the data, skipping union tags pydantic inserts."""
        path: list[str | int] = []
        shown: list[str] = []
        node = data
        loc = tuple(loc)
        for i, part in enumerate(loc):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            elif isinstance(part, str) and isinstance(node, dict) and i < len(loc) - 1:
                continue  # a union tag pydantic adds to the path, such as 'modbus_tcp'
            else:
                shown.append(_fmt(part))
                break
            path.append(part)
            shown.append(_fmt(part))
        for cut in range(len(path), -1, -1):
            hit = self.at.get(tuple(path[:cut]))
            if hit:
                return hit[0], hit[1], "".join(shown).lstrip(".")
        return "?", 0, "".join(shown).lstrip(".")


def _fmt(part: str | int) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _build(node: yaml.Node, loc: Loc, file: str, marks: _Marks, ctor: yaml.constructor.SafeConstructor,
           depth: int = 0) -> Any:
    line = node.start_mark.line + 1
    if depth > 64:  # a self-referencing alias (name: &a [*a]) would recurse for ever
        raise ConfigError([f"{file}:{line}: {_path(loc)}: nested too deeply (a self-referencing alias?)"])
    marks.at[loc] = (file, line)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        ctor.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = _scalar(key_node, loc, file, ctor)
            if key in out:
                raise ConfigError([f"{file}:{key_node.start_mark.line + 1}: {_path(loc + (key,))}: duplicate key"])
            out[key] = _build(value_node, loc + (key,), file, marks, ctor, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, loc + (i,), file, marks, ctor, depth + 1) for i, item in enumerate(node.value)]
    return _scalar(node, loc, file, ctor)


def _scalar(node: yaml.Node, loc: Loc, file: str, ctor: yaml.constructor.SafeConstructor) -> Any:
    """A scalar as the safe loader builds it; an unknown tag or an impossible date is a ConfigError."""
    try:
        return ctor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError) as exc:
        what = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
        raise ConfigError([f"{file}:{node.start_mark.line + 1}: {_path(loc)}: cannot read {node.value!r}: {what}"]) from None


def _path(loc: Loc) -> str:
    return "".join(_fmt(p) for p in loc).lstrip(".") or "(top)"


def _read_yaml(path: Path, marks: _Marks) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 (byte {exc.start}): save the file as UTF-8"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError([f"{path}:{line}: not valid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:  # e.g. a control character (ReaderError carries no mark)
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError([f"{path}:{node.start_mark.line + 1}: expected a mapping of sections at the top"])
    ctor = yaml.constructor.SafeConstructor()
    return _build(node, (), str(path), marks, ctor)


def config_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise ConfigError([f"{path}: no .yaml files in this directory"])
        return files
    if not path.exists():
        raise ConfigError([f"{path}: no such file or directory"])
    return [path]


def read_merged(path: Path) -> tuple[dict[str, Any], _Marks]:
    """Read one file or every YAML file of a directory into one mapping."""
    marks = _Marks()
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for file in config_files(path):
        part = _read_yaml(file, marks)
        for key, value in part.items():
            if key in merged:
                line = marks.at[(key,)][1]
                raise ConfigError([f"{file}:{line}: {key}: section already defined in {origin[key]}"])
            merged[key] = value
            origin[key] = str(file)
    return merged, marks


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: dict[str, Any], marks: _Marks, context: dict[str, Any]) -> M:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            file, line, field = marks.locate(data, err["loc"])
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling)"
            elif err["type"] == "missing":
                msg = "required field is missing"
            problems.append(f"{file}:{line}: {field or '(top)'}: {msg}")
        raise ConfigError(problems) from None


def problems_at(marks: _Marks, data: dict[str, Any], issues: Iterable[tuple[Loc, str]]) -> list[str]:
    out = []
    for loc, msg in issues:
        file, line, field = marks.locate(data, loc)
        out.append(f"{file}:{line}: {field}: {msg}")
    return out
