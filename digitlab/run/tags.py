"""A run's tags and note: what its user says of it (`digitlab tag RUN key=value`, `digitlab note RUN "..."`), as
MLflow's and Guild's users label runs, kept apart from run.json in tags.json so that tagging a run while it trains
never races the training process's own writes. Shown and filtered in `runs`, `compare` and the pages
(`--where tag.KEY=VALUE`, `--where note=...`)."""

from __future__ import annotations

import json
import re

from digitlab.errors import DamagedRun, UserError
from digitlab.options import plural
from digitlab.run import layout
from digitlab.run.folder import RunFolder
from digitlab.system.locks import waiting_lock

KEY = re.compile(r"^[A-Za-z_][\w.-]{0,63}$")
MAX_VALUE = 500
MAX_NOTE = 10_000


def read(run: RunFolder) -> dict:
    """{"tags": {key: value}, "note": text}: empty when the run has none; DamagedRun when tags.json is not what
    digitlab writes."""
    path = run / layout.TAGS
    if not path.exists():
        return {"tags": {}, "note": ""}
    data = run.read_json(layout.TAGS)
    tags, note = data.get("tags", {}), data.get("note", "")
    if not isinstance(tags, dict) or not all(isinstance(k, str) and KEY.match(k) and isinstance(v, str)
                                             for k, v in tags.items()):
        raise DamagedRun(path, "tags is not a mapping of names to text")
    if not isinstance(note, str):
        raise DamagedRun(path, f"note is {note!r}, not text")
    return {"tags": tags, "note": note}


def parse(assignments) -> dict[str, str]:
    """`key=value` arguments as a mapping; a UserError naming the first that is not one."""
    tags = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not KEY.match(key):
            raise UserError(f"tag {text!r}: expected KEY=VALUE, KEY a name of letters, digits, '_', '.' or '-' "
                            f"starting with a letter (at most 64)")
        if len(value) > MAX_VALUE:
            raise UserError(f"tag {key}: the value is {plural(len(value), 'character')}; at most {MAX_VALUE}")
        tags[key] = value
    return tags


def update(run: RunFolder, tags: dict[str, str] | None = None, remove=(), note: str | None = None) -> dict:
    """Merge `tags`, drop the keys in `remove`, replace the note when `note` is given; rewrite tags.json
    atomically under its lock (two taggers at once both land). Returns what the run now has."""
    if note is not None and len(note) > MAX_NOTE:
        raise UserError(f"note: {plural(len(note), 'character')}; at most {MAX_NOTE:,}")
    with waiting_lock(run / layout.TAGS_LOCK):
        current = read(run)
        missing = [key for key in remove if key not in current["tags"]]
        if missing:
            raise UserError(f"{run.path}: has no tag {', '.join(missing)} to remove")
        current["tags"].update(tags or {})
        for key in remove:
            current["tags"].pop(key)
        if note is not None:
            current["note"] = note
        run.write(layout.TAGS, json.dumps(current, indent=2, ensure_ascii=False) + "\n")
    return current


def columns(data: dict) -> dict:
    """A run's tag and note columns: `tags` ('key=value key2=value2'), `note`, and `tag.<key>` for each tag."""
    tags = data.get("tags") or {}
    return {"tags": " ".join(f"{k}={v}" for k, v in sorted(tags.items())) or None, "note": data.get("note") or None,
            **{f"tag.{k}": v for k, v in tags.items()}}
