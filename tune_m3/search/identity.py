"""A resumed search is the same search: what defines a search, recorded and compared.

A new search records its definition in its state file (``tune_m3_search.json``, key
``definition``): the space file's SHA-256, the ``--set`` overrides and the command-line options
that change the space, and the resolved space itself (every key, flattened to ``a.b.c``). The
MLflow parent run adds the dataset's fingerprint (``dataset_fingerprint``) once the data is
loaded.

``--resume`` (and ``--confirm-only``) resolve the space again from today's file and command
line and compare: any difference in the resolved space other than ``description`` (a searched
range, the grid, ``num_samples``, ``max_epochs``, the model, the dataset, the objectives, the
resources or ``max_concurrent``, which Ray's restored experiment would ignore anyway) is refused
with one ``error:`` line naming each changed key, old -> new; so is a dataset whose fingerprint
changed under the same name. ``--confirm-only`` may add or change the ``confirm`` block (that is
its use: re-train a finished search's top-k over seeds); everything else must match. A space file that changed only in comments or layout resumes, with
a note. Searches started before definitions were recorded resume unchecked, with a note.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from tune_m3.errors import UserError
from tune_m3.search.paths import write_state
from tune_m3.search.state import Search

#: resolved-space keys that do not define the search (free text, the file's own name and path)
NOT_DEFINING = ("description", "name", "path")
#: keys ``--confirm-only`` may change: it runs the confirm stage the space describes now
CONFIRM_KEYS = ("confirm.", "confirm:")


def definition(search: Search) -> dict[str, Any]:
    """What defines ``search``, JSON-ready."""
    options = search.options
    resolved = search.space.model_dump(mode="json", exclude=set(NOT_DEFINING), exclude_none=True)
    return _json(
        {
            "space_file": search.space.path,
            "space_sha256": hashlib.sha256(Path(search.space.path).read_bytes()).hexdigest(),
            "overrides": options.overrides,
            "options": {flag: value for (value, flag) in options.space_overrides().values()},
            "resolved": flatten(resolved),
        }
    )


def record(search: Search) -> None:
    """Write the new search's definition into its state file (local storage only)."""
    if search.paths.storage is not None:
        write_state(search.paths, definition=definition(search))


def check_same(search: Search, fingerprint: str | None) -> None:
    """Refuse to resume ``search`` if what defines it changed (see the module doc)."""
    old = search.state.get("definition")
    name = search.paths.name
    if not old:
        print(
            f"note: search '{name}' recorded no definition (started by an older tune_m3): "
            "changes to its space since then cannot be detected",
            file=sys.stderr,
        )
        return
    new = definition(search)
    changes = diff(old.get("resolved", {}), new["resolved"])
    if search.options.confirm_only:  # what --confirm-only is for: a confirm block added or changed
        changes = [c for c in changes if not c.startswith(CONFIRM_KEYS)]
    recorded_fp = search.state.get("dataset_fingerprint")
    if fingerprint and recorded_fp and fingerprint != recorded_fp:
        changes.append(f"dataset fingerprint: {recorded_fp} -> {fingerprint} (same name, new data)")
    if changes:
        raise UserError(
            f"--resume: search '{name}' is not the search this command describes: "
            + "; ".join(changes)
            + ". A resumed search must train what it started with: undo the change(s) "
            "(the command that started it: see its MLflow parent run), or start a new search "
            "with another --name"
        )
    if old.get("space_sha256") != new["space_sha256"]:
        print(
            f"note: {search.space.path} changed since search '{name}' started, but not in "
            "anything that defines the search (comments, layout or description): resuming",
            file=sys.stderr,
        )


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(d, dict) or not d:
        return {prefix: d} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every key that differs (``(unset)`` where one side lacks it)."""
    unset = "(unset)"
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: {_show(old.get(k, unset))} -> {_show(new.get(k, unset))}"
        for k in keys
        if old.get(k, unset) != new.get(k, unset)
    ]


def _show(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _json(v: Any) -> Any:
    """The value as it reads back from the state file (tuples -> lists, keys -> str)."""
    return json.loads(json.dumps(v, default=str))
