"""What the data checks need of a SELECT/INSERT/UPDATE/DELETE/MERGE, as plain values.

PostgreSQL's parse tree is read once, when the statement is parsed (`parse.data_facts`), into
these records; the checks read the records. Plain values can be cached between runs, so a
re-lint needs neither the tree nor the parser.
"""

from __future__ import annotations

from typing import Any

from lockstep.lint.record import FrozenRecord


class Change(FrozenRecord):
    """One INSERT, UPDATE, DELETE or MERGE inside the statement (a CTE may hold several)."""

    __slots__ = ("duplicates", "has_where", "table", "upsert_update", "verb")

    verb: str
    table: str | None
    """The folded, qualified target, or None when it is not a plain table name."""
    has_where: bool
    duplicates: tuple[tuple[str, int], ...]
    """Columns assigned (or listed) twice, with the offset of the repeat in the statement."""
    upsert_update: bool
    """INSERT ... ON CONFLICT DO UPDATE."""

    def __init__(
        self,
        verb: str,
        table: str | None,
        has_where: bool,
        duplicates: tuple[tuple[str, int], ...],
        upsert_update: bool = False,
    ) -> None:
        self.verb = verb
        self.table = table
        self.has_where = has_where
        self.duplicates = duplicates
        self.upsert_update = upsert_update


class DataFacts(FrozenRecord):
    __slots__ = ("changes", "locking", "reads", "root")

    root: str
    """INSERT, UPDATE, DELETE, MERGE or SELECT: the statement's own kind."""
    changes: tuple[Change, ...]
    reads: tuple[str, ...]
    """Tables a plain query reads (CTE names left out)."""
    locking: bool
    """SELECT ... FOR UPDATE/SHARE."""

    def __init__(
        self,
        root: str,
        changes: tuple[Change, ...],
        reads: tuple[str, ...],
        locking: bool,
    ) -> None:
        self.root = root
        self.changes = changes
        self.reads = reads
        self.locking = locking

    def pack(self) -> tuple[object, ...]:
        """As nested tuples of plain values (for the statement cache)."""
        return (
            self.root,
            tuple(
                (c.verb, c.table, c.has_where, c.duplicates, c.upsert_update) for c in self.changes
            ),
            self.reads,
            self.locking,
        )

    @staticmethod
    def unpack(packed: tuple[Any, ...]) -> DataFacts:
        root, changes, reads, locking = packed
        return DataFacts(
            str(root),
            tuple(Change(*change) for change in changes),
            tuple(reads),
            bool(locking),
        )
