"""YAML a user hands us (space files, ``--set`` values), loaded so that it cannot hang or exhaust memory.

``yaml.safe_load`` runs no code, but two things still stall it or what reads its result:

- **size**: a 50 MB file is read, parsed and validated in pure Python for minutes. A space file
  larger than :data:`MAX_BYTES` (1 MiB; the shipped spaces are 1 to 4 KB) is refused before it
  is read past that size.
- **aliases**: an anchor (``&a``) used by aliases (``*a``) is one object referenced many times;
  nine nested lists of nine aliases each (the "billion laughs" pattern) is ten lines that
  *expand* to 9**9 items the moment anything walks the result (pydantic validating a ``str``
  field and formatting its error, ``repr``, ``json.dumps``): 3.6 GB and no end, measured before
  this module existed. Here the composed YAML graph is measured first, each node counted as
  often as aliases repeat it (linear time, with memoisation), and a document whose aliases add
  more than :data:`MAX_ALIAS_NODES` nodes is refused. Ordinary use of anchors (a shared
  ``fixed`` block reused a few times) stays well under that.

Either way the caller gets a :class:`~tune_m3.errors.UserError` (one ``error:`` line, exit 2);
so does a file that is not UTF-8, or nesting deeper than Python's recursion allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tune_m3.errors import UserError

MAX_BYTES = 1 << 20  # 1 MiB
MAX_ALIAS_NODES = 100_000


def expanded_size(root: yaml.Node) -> int:
    """Nodes of ``root``'s tree with every alias expanded (iterative; shared nodes memoised)."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        kids = _children(node)
        if children_done or not kids:
            size[id(node)] = 1 + sum(size.get(id(k), 0) for k in kids)
            continue
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)
    return size[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _distinct(root: yaml.Node) -> int:
    """Distinct nodes of ``root``'s graph (what the file itself spells out)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(_children(node))
    return len(seen)


def _count(n: int) -> str:
    """``1,234`` or ``about 10^12`` (n may have thousands of digits)."""
    return f"{n:,}" if n < 10**9 else f"about 10^{int(n.bit_length() * 0.30103)}"


def load_text(text: str, where: str) -> Any:
    """``yaml.safe_load(text)`` with the alias bound; errors name ``where`` (a file, a flag)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        extra = expanded_size(node) - _distinct(node)
        if extra > MAX_ALIAS_NODES:
            raise UserError(
                f"{where}: YAML aliases (*name) repeat anchored values into {_count(extra)} more "
                f"items, over the limit of {MAX_ALIAS_NODES:,} (an alias bomb?); write the "
                "values out, or use fewer aliases"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise UserError(f"{where}: not valid YAML: {err}") from None
    except RecursionError:
        raise UserError(f"{where}: YAML nested too deeply to read") from None
    finally:
        loader.dispose()


def load_file(path: Path, what: str = "space file") -> Any:
    """A YAML file of at most :data:`MAX_BYTES` bytes, loaded with :func:`load_text`."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise UserError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    if len(data) > MAX_BYTES:
        raise UserError(
            f"{path}: a {what} of more than {MAX_BYTES:,} bytes (1 MiB) is refused; space files "
            "are a few KB: is this the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: the {what} is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    return load_text(text, str(path))
