"""PostgreSQL's own parser (libpg_query, through pgparse) for the lint: whether a statement is
valid PostgreSQL, and what the data checks need of a data statement's parse tree.

libpg_query is the grammar of the PostgreSQL server itself (version 17), compiled: every
statement form PostgreSQL accepts parses, nothing else does, and a statement takes a few
microseconds. Its parse tree is plain dicts and lists, read here into the facts of
lint/datafacts.py; names in it are already folded the way PostgreSQL folds them.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pgparse

from lockstep.lint.datafacts import Change, DataFacts
from lockstep.lint.reading import SyntaxProblem

Node = dict[str, Any]


def parse(text: str) -> list[Node] | SyntaxProblem:
    """The parse tree of each statement in `text` (raw statements, as PostgreSQL's
    `raw_parser` gives them), or the syntax error and its offset within `text`."""
    try:
        statements: list[Node] = pgparse.parse(text)
    except Exception as error:
        return _problem(error, text)
    return statements


def check(text: str) -> SyntaxProblem | None:
    """Whether `text` is valid PostgreSQL, without building its tree: libpg_query's
    normalize runs the same raw parser and returns a string, about ten times cheaper than
    the parse tree (which crosses into Python as JSON)."""
    try:
        pgparse.normalize(text)
    except Exception as error:
        return _problem(error, text)
    return None


def _problem(error: Exception, text: str) -> SyntaxProblem:
    if not isinstance(error, pgparse.PGQueryError):
        # the parser's own limits (stack depth): reported, never passed
        return SyntaxProblem(f"the parser failed ({type(error).__name__})", 0)
    message = str(getattr(error, "message", "") or error)
    position = getattr(error, "position", 0)
    offset = position - 1 if isinstance(position, int) and position > 0 else 0
    return SyntaxProblem(message, min(offset, max(len(text) - 1, 0)))


# ------------------------------------------------------------------ data statements

_CHANGES = {
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
}


def _walk(tree: Any) -> Any:
    """Every (node type, node) in the tree, breadth first (the order changes are listed)."""
    queue: deque[Any] = deque([tree])
    while queue:
        item = queue.popleft()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, dict | list):
                    if key[:1].isupper() and isinstance(value, dict):
                        yield key, value
                    queue.append(value)
        elif isinstance(item, list):
            queue.extend(item)


def _relation(node: Node) -> str | None:
    parts = [node.get(key) for key in ("catalogname", "schemaname", "relname")]
    named = [part for part in parts if isinstance(part, str) and part]
    return ".".join(named) if named else None


class _Offsets:
    """libpg_query's locations are byte offsets; the lint's are character offsets."""

    def __init__(self, text: str) -> None:
        self.encoded = None if text.isascii() else text.encode()

    def of(self, location: object) -> int:
        if not isinstance(location, int) or location < 0:
            return -1
        if self.encoded is None:
            return location
        return len(self.encoded[:location].decode(errors="ignore"))


def _duplicates(targets: object, offsets: _Offsets) -> tuple[tuple[str, int], ...]:
    seen: set[str] = set()
    found: list[tuple[str, int]] = []
    for target in targets if isinstance(targets, list) else []:
        result = target.get("ResTarget") if isinstance(target, dict) else None
        name = result.get("name") if isinstance(result, dict) else None
        if not isinstance(name, str) or result is None:
            continue
        if name in seen:
            found.append((name, offsets.of(result.get("location"))))
        seen.add(name)
    return tuple(found)


def data_facts(statement: Node, text: str) -> DataFacts:
    """What the data checks need of one data statement's parse tree (lint/datafacts.py)."""
    tree = statement.get("stmt", statement)
    top = next(iter(tree), "") if isinstance(tree, dict) else ""
    root = _CHANGES.get(top, "SELECT")
    offsets = _Offsets(text)
    changes: list[Change] = []
    cte_names: set[str] = set()
    relations: list[tuple[int, str]] = []
    locking = False
    for kind, node in _walk(tree):
        verb = _CHANGES.get(kind)
        if verb is not None:
            relation = node.get("relation") or {}
            table = _relation(relation)
            if verb == "INSERT":
                conflict = node.get("onConflictClause") or {}
                changes.append(
                    Change(
                        verb,
                        table,
                        True,
                        _duplicates(node.get("cols"), offsets),
                        conflict.get("action") == "ONCONFLICT_UPDATE",
                    )
                )
            elif verb == "UPDATE":
                changes.append(
                    Change(
                        verb,
                        table,
                        "whereClause" in node,
                        _duplicates(node.get("targetList"), offsets),
                    )
                )
            elif verb == "DELETE":
                changes.append(Change(verb, table, "whereClause" in node, ()))
            else:
                changes.append(Change(verb, table, True, ()))
        elif kind == "CommonTableExpr":
            name = node.get("ctename")
            if isinstance(name, str):
                cte_names.add(name)
        elif kind == "RangeVar":
            name = _relation(node)
            if name is not None:
                relations.append((offsets.of(node.get("location")), name))
        elif kind == "SelectStmt" and node.get("lockingClause"):
            locking = True
    reads: list[str] = []
    if not changes:
        for _, name in sorted(relations):
            if name not in cte_names and name not in reads:
                reads.append(name)
    return DataFacts(root, tuple(changes), tuple(reads), locking)
