"""Column definitions and table constraints, read from tokens; the column-type style rules."""

from __future__ import annotations

from lockstep.lint.checks.base import Context
from lockstep.lint.facts import (
    INT_TYPES,
    SERIAL_TYPES,
    SMALLINT_TYPES,
    DefaultValue,
    PgType,
    parse_type,
    read_default,
)
from lockstep.lint.record import Record
from lockstep.lint.tokens import TokenView

_COLUMN_CONSTRAINT_WORDS = frozenset(
    {
        "CONSTRAINT",
        "NOT",
        "NULL",
        "CHECK",
        "DEFAULT",
        "GENERATED",
        "UNIQUE",
        "PRIMARY",
        "REFERENCES",
        "COLLATE",
        "COMPRESSION",
        "STORAGE",
        "DEFERRABLE",
        "INITIALLY",
    }
)
# NOT NULL / NULL can be part of an expression (x IS NOT NULL), so they end one only when
# they stand on their own (see _expression_end).
_EXPRESSION_ENDS = _COLUMN_CONSTRAINT_WORDS - {"NOT", "NULL"}
TABLE_CONSTRAINT_WORDS = frozenset(
    {"CONSTRAINT", "CHECK", "UNIQUE", "PRIMARY", "EXCLUDE", "FOREIGN"}
)


class ColumnDef(Record):
    """One column definition; offsets point at the clause that matters."""

    __slots__ = (
        "checks",
        "default",
        "generated",
        "identity",
        "name",
        "not_null",
        "offset",
        "primary_key",
        "references",
        "type",
        "type_offset",
        "unique",
    )

    name: str
    offset: int
    type: PgType | None
    type_offset: int
    not_null: int | None
    default: DefaultValue | None
    generated: tuple[int, str] | None
    """(offset, "stored" | "virtual" | "unspecified") of GENERATED ALWAYS AS (expression)."""
    identity: int | None
    primary_key: int | None
    unique: int | None
    references: tuple[str, int] | None
    checks: list[tuple[int, bool]]
    """(offset, whether it is CHECK (this column IS NOT NULL))."""

    def __init__(
        self,
        name: str,
        offset: int,
        type: PgType | None,
        type_offset: int,
        not_null: int | None = None,
        default: DefaultValue | None = None,
        generated: tuple[int, str] | None = None,
        identity: int | None = None,
        primary_key: int | None = None,
        unique: int | None = None,
        references: tuple[str, int] | None = None,
        checks: list[tuple[int, bool]] | None = None,
    ) -> None:
        self.name = name
        self.offset = offset
        self.type = type
        self.type_offset = type_offset
        self.not_null = not_null
        self.default = default
        self.generated = generated
        self.identity = identity
        self.primary_key = primary_key
        self.unique = unique
        self.references = references
        self.checks = [] if checks is None else checks


class TableConstraint(Record):
    """One table constraint (ADD CONSTRAINT ..., or an element of CREATE TABLE)."""

    __slots__ = (
        "columns",
        "kind",
        "name",
        "not_null_column",
        "not_valid",
        "offset",
        "references",
        "using_index",
    )

    name: str | None
    kind: str
    """check, unique, primary, exclude, foreign or unknown."""
    offset: int
    using_index: bool
    not_valid: bool
    columns: set[str]
    not_null_column: str | None
    references: str | None

    def __init__(
        self,
        name: str | None,
        kind: str,
        offset: int,
        using_index: bool,
        not_valid: bool,
        columns: set[str],
        not_null_column: str | None,
        references: str | None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.offset = offset
        self.using_index = using_index
        self.not_valid = not_valid
        self.columns = columns
        self.not_null_column = not_null_column
        self.references = references


def _expression_end(view: TokenView, start: int, end: int) -> int:
    """End of a column-constraint expression (a DEFAULT value) that starts at `start`."""
    words = view.words
    level = view.depth[start] if start < view.n else 0
    for j in range(start + 1, end):
        if view.depth[j] != level:
            continue
        word = words[j]
        if word in _EXPRESSION_ENDS:
            return j
        if word == "NOT" and view.word(j + 1) in ("NULL", "DEFERRABLE", "ENFORCED"):
            return j
        if word == "NULL" and words[j - 1] not in ("IS", "NOT", "::", "DEFAULT"):
            return j
    return end


def not_null_check_column(view: TokenView, open_index: int) -> str | None:
    """The column of CHECK (column IS NOT NULL), given the index of its "("."""
    close = view.close_of(open_index)
    inner = [j for j in range(open_index + 1, close) if view.words[j] not in ("(", ")")]
    if (
        len(inner) == 4
        and view.is_name(inner[0])
        and [view.words[j] for j in inner[1:]] == ["IS", "NOT", "NULL"]
    ):
        return view.name(inner[0])
    return None


def _names_in(view: TokenView, start: int, end: int) -> set[str]:
    return {view.name(j) for j in range(start, min(end, view.n)) if view.is_name(j)}


def _read_generated(view: TokenView, k: int, column: ColumnDef) -> int:
    """GENERATED {ALWAYS | BY DEFAULT} AS IDENTITY [(...)] or GENERATED ALWAYS AS (...) ..."""
    j = k + 1
    if view.word(j) == "ALWAYS":
        j += 1
    elif view.at(j, "BY", "DEFAULT"):
        j += 2
    if view.word(j) == "AS":
        j += 1
    if view.word(j) == "IDENTITY":
        column.identity = view.offset(k)
        return view.after_group(j + 1)
    if view.word(j) == "(":
        after = view.after_group(j)
        storage = view.word(after)
        if storage in ("STORED", "VIRTUAL"):
            column.generated = (view.offset(k), storage.lower())
            return after + 1
        column.generated = (view.offset(k), "unspecified")
        return after
    return j


def _after_references(view: TokenView, k: int, end: int) -> int:
    """Skip a REFERENCES clause's column list, MATCH and ON DELETE/UPDATE actions (whose SET
    NULL and SET DEFAULT are not column constraints)."""
    k = view.after_group(k)
    while k < end:
        if view.word(k) == "MATCH":
            k += 2
        elif view.word(k) == "ON" and view.word(k + 1) in ("DELETE", "UPDATE"):
            k += 2
            if view.at(k, "NO", "ACTION"):
                k += 2
            elif view.word(k) == "SET":
                k = view.after_group(k + 2)
            else:
                k += 1
        else:
            return k
    return k


def parse_column(view: TokenView, start: int, end: int) -> ColumnDef | None:
    """Read `name type [constraints]` from tokens [start, end)."""
    if not view.is_name(start):
        return None
    words = view.words
    type_end = start + 1
    while type_end < end and not (
        words[type_end] in _COLUMN_CONSTRAINT_WORDS and view.depth[type_end] == view.depth[start]
    ):
        type_end += 1
    column = ColumnDef(
        name=view.name(start),
        offset=view.offset(start),
        type=parse_type(view, start + 1, type_end),
        type_offset=view.offset(start + 1),
    )
    k = type_end
    while k < end:
        word = words[k]
        if word == "CONSTRAINT":
            k += 2
        elif word == "NOT" and view.word(k + 1) == "NULL":
            column.not_null = view.offset(k)
            k += 2
        elif word == "CHECK" and view.word(k + 1) == "(":
            is_not_null = not_null_check_column(view, k + 1) == column.name
            column.checks.append((view.offset(k), is_not_null))
            k = view.after_group(k + 1)
        elif word == "DEFAULT":
            expression_end = _expression_end(view, k + 1, end)
            column.default = read_default(view, k + 1, expression_end)
            k = expression_end
        elif word == "GENERATED":
            k = _read_generated(view, k, column)
        elif word == "UNIQUE":
            column.unique = view.offset(k)
            k += 1
        elif word == "PRIMARY" and view.word(k + 1) == "KEY":
            column.primary_key = view.offset(k)
            k += 2
        elif word == "REFERENCES":
            table, after = view.qualified(k + 1)
            if table is not None:
                column.references = (table, view.offset(k))
            k = _after_references(view, max(after, k + 1), end)
        else:
            k += 1
    return column


def parse_table_constraint(view: TokenView, start: int, end: int) -> TableConstraint:
    """Read `[CONSTRAINT name] CHECK|UNIQUE|PRIMARY KEY|EXCLUDE|FOREIGN KEY ...`."""
    name: str | None = None
    i = start
    if view.word(i) == "CONSTRAINT" and view.is_name(i + 1):
        name = view.name(i + 1)
        i += 2
    word = view.word(i)
    kind = {
        "CHECK": "check",
        "UNIQUE": "unique",
        "PRIMARY": "primary",
        "EXCLUDE": "exclude",
        "FOREIGN": "foreign",
    }.get(word, "unknown")
    after_kind = i + 2 if kind in ("primary", "foreign") else i + 1
    if kind == "unique" and view.word(after_kind) == "NULLS":
        after_kind += 3 if view.word(after_kind + 1) == "NOT" else 2
    using_index = kind in ("unique", "primary") and view.at(after_kind, "USING", "INDEX")
    not_valid = view.contains(i, end, "NOT", "VALID") != -1
    columns: set[str] = set()
    not_null_column: str | None = None
    references: str | None = None
    opening = after_kind if view.word(after_kind) == "(" else view.find("(", after_kind, end)
    if opening != -1 and opening < end:
        columns = _names_in(view, opening + 1, view.close_of(opening))
        if kind == "check":
            not_null_column = not_null_check_column(view, opening)
    if kind == "foreign":
        referencing = view.find("REFERENCES", i, end)
        if referencing != -1:
            references, _ = view.qualified(referencing + 1)
    return TableConstraint(
        name=name,
        kind=kind,
        offset=view.offset(i),
        using_index=using_index,
        not_valid=not_valid,
        columns=columns,
        not_null_column=not_null_column,
        references=references,
    )


def check_column_type(ctx: Context, pg_type: PgType | None, offset: int, column: str) -> None:
    """The style rules about a column's type (they apply to new tables too)."""
    if pg_type is None:
        return
    outcome = ctx.outcome
    name = pg_type.name
    written = pg_type.text or name
    if name == "char":
        outcome.hit(
            "ban-char-field",
            offset,
            f"Column {column} is {written}: char(n) pads with blanks and is no faster than text.",
        )
    elif name == "varchar" and pg_type.params is not None:
        outcome.hit(
            "prefer-text-field",
            offset,
            f"Column {column} is {written}: changing the limit later (other than raising it) "
            "needs ACCESS EXCLUSIVE.",
            f"Use text with a CHECK: {column} text CHECK (char_length({column}) <= "
            f"{pg_type.params[0]}).",
        )
    elif name == "timestamp":
        outcome.hit(
            "prefer-timestamptz",
            offset,
            f"Column {column} is {written} (without time zone): the UTC offset is lost.",
            f"Use {column} timestamptz.",
        )
    elif name == "json":
        outcome.hit(
            "prefer-jsonb",
            offset,
            f"Column {column} is json: it has no equality operator and is re-parsed on every "
            "access.",
            f"Use {column} jsonb.",
        )
    if name in INT_TYPES:
        outcome.hit(
            "prefer-bigint-over-int",
            offset,
            f"Column {column} is {written}, a 32-bit integer that runs out at 2,147,483,647.",
            f"Use {'bigint GENERATED BY DEFAULT AS IDENTITY' if name == 'serial' else 'bigint'}.",
        )
    elif name in SMALLINT_TYPES:
        outcome.hit(
            "prefer-bigint-over-smallint",
            offset,
            f"Column {column} is {written}, a 16-bit integer that runs out at 32,767.",
            "Use bigint.",
        )
    if name in SERIAL_TYPES:
        outcome.hit(
            "prefer-identity",
            offset,
            f"Column {column} is {written}: serial creates a loosely attached sequence.",
            f"Use {column} bigint GENERATED BY DEFAULT AS IDENTITY.",
        )
