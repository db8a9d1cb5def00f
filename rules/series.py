"""Reading series from files, for backtests: CSV or JSON, errors named by file and line.

CSV: a header with ``ts,site,sensor,quantity,value`` and optionally ``unit,quality,gateway,drill,
camera,id``; ``ts`` is ISO 8601 with an offset (``2026-07-14T08:00:00+08:00``) or ``Z``. Lines
starting with ``#`` are comments.
JSON: a list of readings, a ReadingBatch, or JSON lines of either.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from yujing.errors import ConfigError
from yujing.model import Reading, ReadingBatch

REQUIRED = ("ts", "site", "sensor", "quantity", "value")


def load_series(path: str | Path) -> list[Reading]:
    """Every reading in ``path``, in file order. Raises ConfigError listing ``file:line: problem``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}: {e.strerror}"]) from None
    if path.suffix.lower() in (".json", ".jsonl", ".ndjson") or text.lstrip()[:1] in ("[", "{"):
        return list(_json(path, text))
    return list(_csv(path, text))


def _csv(path: Path, text: str) -> Iterator[Reading]:
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
    if not lines:
        return
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in lines)))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError([f"{path}:{lines[0][0]}: missing columns {missing} (need {list(REQUIRED)})"])
    problems = []
    out = []
    for (lineno, _), row in zip(lines[1:], reader):
        doc: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "") and k not in ("camera",)}
        doc.setdefault("id", f"{path.name}:{lineno}")
        doc.setdefault("unit", "")
        if "drill" in doc:
            doc["drill"] = doc["drill"].strip().lower() in ("1", "true", "yes")
        if row.get("camera"):
            doc["meta"] = {"camera": row["camera"]}
        try:
            out.append(Reading.model_validate(doc))
        except ValidationError as e:
            err = e.errors()[0]
            problems.append(f"{path}:{lineno}: {'.'.join(map(str, err['loc']))}: {err['msg']}")
    if problems:
        raise ConfigError(problems)
    yield from out


def _json(path: Path, text: str) -> Iterator[Reading]:
    try:
        docs = [json.loads(text)]
    except json.JSONDecodeError:
        try:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ConfigError([f"{path}:{e.lineno}: not JSON: {e.msg}"]) from None
    for doc in docs:
        items = doc if isinstance(doc, list) else [doc]
        for n, item in enumerate(items):
            try:
                if isinstance(item, dict) and "readings" in item:
                    yield from ReadingBatch.model_validate(item).readings
                else:
                    if isinstance(item, dict):
                        item = {"id": f"{path.name}#{n}", "unit": "", **item}
                    yield Reading.model_validate(item)
            except ValidationError as e:
                err = e.errors()[0]
                raise ConfigError([f"{path}: item {n}: {'.'.join(map(str, err['loc']))}: {err['msg']}"]) from None
