"""Desired catalog minus current catalog: ordered, online-safe expand/contract migrations.

Pure functions: both catalogs are read by `catalog.introspect` (the desired one from a scratch
database the desired SQL was loaded into, so PostgreSQL normalised it), and this module decides
the statements. Online safety is built in, not linted in afterwards:

- an index on an existing table is built CONCURRENTLY, in a migration of its own that runs
  outside a transaction; a UNIQUE or PRIMARY KEY constraint on an existing table is attached
  to such an index (`USING INDEX`);
- a FOREIGN KEY or CHECK on an existing table is added NOT VALID and validated in a later
  migration; SET NOT NULL goes through a validated CHECK (c IS NOT NULL), so it needs no scan;
- new enum values are added (ADD VALUE ... BEFORE/AFTER), in their own migration, never by
  recreating the type;
- views are created once what they read exists, and dropped before what they read changes;
- whatever loses data or breaks the running version (drops, type changes that rewrite or
  narrow) goes to a contract migration and needs `--allow-hazard KIND`.

The generated migrations, in version order (a group without statements is left out):

    renames           contract  transactional     the --rename hints
    expand_types      expand    transactional     ALTER TYPE ... ADD VALUE
    expand            expand    transactional     new objects, NOT VALID constraints, ...
    expand_indexes    expand    non-transactional CREATE INDEX CONCURRENTLY
    expand_backfill   expand    transactional     backfills allowed with --allow-hazard backfill
    expand_validate   expand    transactional     VALIDATE CONSTRAINT, UNIQUE USING INDEX
    contract_indexes  contract  non-transactional DROP INDEX CONCURRENTLY
    contract          contract  transactional     SET NOT NULL, drops, type changes
    contract_validate contract  transactional     VALIDATE of constraints on retyped columns
    contract_not_null contract  transactional     SET NOT NULL of retyped columns

A column whose type changes gets its new constraints (and the CHECK behind a new NOT NULL)
only after the type change: a type change re-checks every constraint on the column.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from .catalog import Catalog, Column, Constraint, Enum, Index, SequenceDef, Table, View, split_name
from .hazards import HAZARDS

Phase = Literal["expand", "contract"]

GROUPS: tuple[tuple[str, Phase, bool], ...] = (
    ("renames", "contract", True),
    ("expand_types", "expand", True),
    ("expand", "expand", True),
    ("expand_indexes", "expand", False),
    ("expand_backfill", "expand", True),
    ("expand_validate", "expand", True),
    ("contract_indexes", "contract", False),
    ("contract", "contract", True),
    ("contract_validate", "contract", True),
    ("contract_not_null", "contract", True),
)
"""(name, phase, transactional), in the order the migrations run."""


class DiffError(ValueError):
    """The change cannot be generated as asked; the message says why and what to do."""


class HazardError(DiffError):
    """The change needs hazards that were not allowed."""

    def __init__(self, hazards: Sequence[tuple[str, str]]) -> None:
        self.hazards = tuple(hazards)
        kinds = sorted({kind for kind, _ in self.hazards})
        lines = "\n".join(f"  - {kind}: {what}" for kind, what in self.hazards)
        super().__init__(
            f"the change is destructive or blocking ({len(self.hazards)} "
            f"hazard{'s' if len(self.hazards) != 1 else ''}):\n{lines}\n"
            "review them, then allow them with "
            + " ".join(f"--allow-hazard {kind}" for kind in kinds)
        )


@dataclass(frozen=True)
class Rename:
    """A `--rename` hint, resolved to server-quoted names."""

    table: str
    """The table as it is now (qualified)."""
    column: str | None
    """The column as it is now, for a column rename; None for a table rename."""
    new_name: str
    """The new (unqualified) name."""

    @property
    def up(self) -> str:
        if self.column is None:
            return f"ALTER TABLE {self.table} RENAME TO {self.new_name}"
        return f"ALTER TABLE {self.table} RENAME COLUMN {self.column} TO {self.new_name}"

    @property
    def down(self) -> str:
        schema, name = split_name(self.table)
        if self.column is None:
            return f"ALTER TABLE {schema}.{self.new_name} RENAME TO {name}"
        return f"ALTER TABLE {self.table} RENAME COLUMN {self.new_name} TO {self.column}"


@dataclass(frozen=True)
class Statement:
    sql: str
    """One statement, without its `;`."""
    note: str | None = None
    """A comment written above it (an ignore comment with its reason, or an explanation)."""

    def render(self) -> str:
        note = f"-- {self.note}\n" if self.note else ""
        return f"{note}{self.sql};\n"


@dataclass
class Group:
    name: str
    phase: Phase
    transactional: bool
    up: list[Statement] = field(default_factory=list)
    down: list[Statement] = field(default_factory=list)
    """Undo statements, in the order they run (the reverse of `up`)."""

    def add(self, up: Statement | str, down: Statement | str | None = None) -> None:
        self.up.append(up if isinstance(up, Statement) else Statement(up))
        if down is not None:
            self.down.insert(0, down if isinstance(down, Statement) else Statement(down))


@dataclass(frozen=True)
class GeneratedMigration:
    """One migration `lockstep diff` writes: `<version>_<name>.up.sql` and `.down.sql`."""

    name: str
    phase: Phase
    transactional: bool
    up: str
    down: str | None
    """None when there is nothing that can undo it (added enum values)."""


@dataclass
class DiffResult:
    migrations: list[GeneratedMigration]
    hazards: list[tuple[str, str]]
    """(kind, what) of every hazard in the change (all of them allowed, or it raised)."""
    notes: list[str]
    """Things the reader should know (unsupported differences left alone, ...)."""

    @property
    def empty(self) -> bool:
        return not self.migrations


# ------------------------------------------------------------------------------------ quoting


def literal(text: str) -> str:
    """A string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + text.replace("'", "''") + "'"


def _comment(value: str | None) -> str:
    return "NULL" if value is None else literal(value)


def _short(name: str, suffix: str) -> str:
    """`name_suffix` cut to PostgreSQL's 63 bytes (quoted names kept quoted)."""
    quoted = name.startswith('"')
    bare = name.strip('"')
    budget = 63 - len(suffix.encode())
    while len(bare.encode()) > budget:
        bare = bare[:-1]
    result = bare + suffix
    return f'"{result}"' if quoted else result


# --------------------------------------------------------------------------------- type safety

_VARCHAR = re.compile(r"^character varying(?:\((\d+)\))?$")
_NUMERIC = re.compile(r"^numeric(?:\((\d+),(\d+)\))?$")
_PRECISION = re.compile(r"^(timestamp|time|interval)(?:\((\d+)\))?( with(?:out)? time zone)?$")


def binary_coercible(old: str, new: str) -> bool:
    """Whether ALTER COLUMN TYPE from `old` to `new` (format_type text) needs no rewrite and
    loses nothing: a longer or unlimited varchar, varchar <-> text, a larger numeric precision
    at the same scale, a larger timestamp/time/interval precision, cidr to inet."""
    if old == new:
        return True
    if new == "text" and (old == "text" or _VARCHAR.match(old)):
        return True
    new_varchar, old_varchar = _VARCHAR.match(new), _VARCHAR.match(old)
    if new_varchar and (old == "text" or old_varchar):
        if new_varchar.group(1) is None:
            return True
        return bool(
            old_varchar and old_varchar.group(1) and int(new_varchar[1]) >= int(old_varchar[1])
        )
    new_numeric, old_numeric = _NUMERIC.match(new), _NUMERIC.match(old)
    if new_numeric and old_numeric:
        if new_numeric.group(1) is None:
            return True
        return bool(
            old_numeric.group(1)
            and int(new_numeric[1]) >= int(old_numeric[1])
            and new_numeric[2] == old_numeric[2]
        )
    new_precise, old_precise = _PRECISION.match(new), _PRECISION.match(old)
    if new_precise and old_precise and new_precise[1] == old_precise[1]:
        if (new_precise[3] or "") != (old_precise[3] or ""):
            return False
        return int(new_precise[2] or 6) >= int(old_precise[2] or 6)
    return old == "cidr" and new == "inet"


_VOLATILE_CALL = re.compile(
    r"\b(random|clock_timestamp|timeofday|gen_random_uuid|uuid_generate_v[14]\w*|nextval|"
    r"uuidv[47]|gen_random_bytes|txid_current|statement_timestamp)\s*\(",
    re.IGNORECASE,
)


def volatile_default(expression: str | None) -> bool:
    """Whether a default (as pg_get_expr prints it) is evaluated per row (a rewrite on ADD
    COLUMN). Unknown function calls are not assumed volatile here: the desired schema's own
    functions are usually immutable helpers; the lint re-checks the generated SQL."""
    return expression is not None and _VOLATILE_CALL.search(expression) is not None


# ------------------------------------------------------------------------------------ rendering


def column_sql(column: Column, *, with_not_null: bool = True) -> str:
    parts = [column.name, column.type]
    if column.collation:
        parts.append(f"COLLATE {column.collation}")
    if column.identity:
        parts.append(f"GENERATED {column.identity.upper()} AS IDENTITY")
    if column.generated is not None:
        parts.append(f"GENERATED ALWAYS AS ({column.generated}) STORED")
    elif column.default is not None:
        parts.append(f"DEFAULT {column.default}")
    if with_not_null and column.not_null:
        parts.append("NOT NULL")
    return " ".join(parts)


def create_table_sql(table: Table) -> str:
    elements = [column_sql(column) for column in table.columns]
    elements += [
        f"CONSTRAINT {c.name} {c.definition}" for c in table.constraints if c.kind != "foreign"
    ]
    body = ",\n  ".join(elements)
    unlogged = "UNLOGGED " if table.unlogged else ""
    return f"CREATE {unlogged}TABLE {table.name} (\n  {body}\n)"


def view_sql(view: View, *, replace: bool = False) -> str:
    kind = "MATERIALIZED VIEW" if view.materialized else "VIEW"
    verb = "CREATE OR REPLACE" if replace else "CREATE"
    return f"{verb} {kind} {view.name} AS\n{view.definition.strip().rstrip(';')}"


def drop_view_sql(view: View) -> str:
    kind = "MATERIALIZED VIEW" if view.materialized else "VIEW"
    return f"DROP {kind} IF EXISTS {view.name}"


def concurrent_index_sql(index: Index, name: str | None = None) -> str:
    definition = index.definition
    if name is not None:
        _, old = split_name(index.name)
        definition = definition.replace(f"INDEX {old} ON ", f"INDEX {name} ON ", 1)
    return re.sub(
        r"^CREATE (UNIQUE )?INDEX ",
        lambda m: f"CREATE {m.group(1) or ''}INDEX CONCURRENTLY IF NOT EXISTS ",
        definition,
        count=1,
    )


def sequence_sql(sequence: SequenceDef) -> str:
    cycle = "CYCLE" if sequence.cycle else "NO CYCLE"
    return (
        f"CREATE SEQUENCE {sequence.name} AS {sequence.data_type} START WITH {sequence.start} "
        f"INCREMENT BY {sequence.increment} MINVALUE {sequence.minimum} "
        f"MAXVALUE {sequence.maximum} CACHE {sequence.cache} {cycle}"
    )


def enum_sql(enum: Enum) -> str:
    labels = ", ".join(literal(label) for label in enum.labels)
    return f"CREATE TYPE {enum.name} AS ENUM ({labels})"


# --------------------------------------------------------------------------------------- diff


_IGNORE_TYPE = "lockstep-ignore: changing-column-type"


def diff(
    current: Catalog,
    desired: Catalog,
    *,
    allow: Iterable[str] = (),
    renames: Sequence[Rename] = (),
    casts: Iterable[tuple[str, str]] | None = None,
) -> DiffResult:
    """The migrations that take a database from `current` to `desired`.

    With `renames`, `current` must already be the catalog as it is after those renames (the
    caller applies them on a scratch copy); their statements become the first migration.
    Raises HazardError when the change has hazards not in `allow`. `casts` holds the
    (old type, new type) pairs with a direct cast; a type change without one converts through
    text (None: assume every change has one).
    """
    builder = _Builder(current, desired, None if casts is None else set(casts))
    for rename in renames:
        builder.group("renames").add(
            Statement(
                rename.up,
                "lockstep-ignore: renaming-column, renaming-table -- asked for with --rename",
            ),
            rename.down,
        )
    builder.build()
    allowed = set(allow)
    unknown = sorted(allowed - set(HAZARDS))
    if unknown:
        raise DiffError(
            f"unknown hazard kind(s) {', '.join(unknown)}; known: {', '.join(sorted(HAZARDS))}"
        )
    missing = [(kind, what) for kind, what in builder.hazards if kind not in allowed]
    if missing:
        raise HazardError(missing)
    return DiffResult(builder.migrations(), builder.hazards, builder.notes)


class _Builder:
    def __init__(
        self, current: Catalog, desired: Catalog, casts: set[tuple[str, str]] | None
    ) -> None:
        self.current = current
        self.desired = desired
        self.casts = casts
        self.groups = {name: Group(name, phase, tx) for name, phase, tx in GROUPS}
        self.hazards: list[tuple[str, str]] = []
        self.notes: list[str] = []
        self.new_tables: set[str] = set()
        self.views_to_recreate: dict[str, View] = {}
        """Current views dropped in `contract` before their tables change (name -> view)."""
        self.not_null_dropped: dict[str, list[str]] = {}
        """Columns of a dropped primary key that become nullable (after the drop)."""
        self.retyped: set[tuple[str, str]] = set()
        """(table, column) whose type changes (in `contract`)."""

    def group(self, name: str) -> Group:
        return self.groups[name]

    def hazard(self, kind: str, what: str) -> None:
        self.hazards.append((kind, what))

    def migrations(self) -> list[GeneratedMigration]:
        generated: list[GeneratedMigration] = []
        for group in self.groups.values():
            if not group.up:
                continue
            header = _header(group)
            up = header + "\n".join(statement.render() for statement in group.up)
            down = None
            if group.down:
                down = (
                    f"-- down of {group.name}: restores the schema, not rows or values a "
                    "drop removed\n\n" + "\n".join(s.render() for s in group.down)
                )
            generated.append(
                GeneratedMigration(group.name, group.phase, group.transactional, up, down)
            )
        return generated

    # ------------------------------------------------------------------------------ the order

    def build(self) -> None:
        self.schemas_and_extensions()
        self.enums()
        self.sequences()
        self.tables()
        self.views()
        self.comments()
        self.drops()

    def schemas_and_extensions(self) -> None:
        expand, contract = self.group("expand"), self.group("contract")
        for schema in self.desired.schemas:
            if schema not in self.current.schemas:
                expand.add(
                    f"CREATE SCHEMA IF NOT EXISTS {schema}", f"DROP SCHEMA IF EXISTS {schema}"
                )
        current_extensions = dict(self.current.extensions)
        for name, schema in self.desired.extensions:
            if name not in current_extensions:
                expand.add(
                    f"CREATE EXTENSION IF NOT EXISTS {name} SCHEMA {schema}",
                    f"DROP EXTENSION IF EXISTS {name}",
                )
        desired_extensions = dict(self.desired.extensions)
        for name, schema in self.current.extensions:
            if name not in desired_extensions:
                self.hazard("drop-extension", f"extension {name}")
                contract.add(
                    f"DROP EXTENSION IF EXISTS {name}",
                    f"CREATE EXTENSION IF NOT EXISTS {name} SCHEMA {schema}",
                )

    def enums(self) -> None:
        expand, types = self.group("expand"), self.group("expand_types")
        current = {enum.name: enum for enum in self.current.enums}
        for enum in self.desired.enums:
            old = current.get(enum.name)
            if old is None:
                expand.add(enum_sql(enum), f"DROP TYPE IF EXISTS {enum.name}")
                continue
            if old.labels == enum.labels:
                continue
            kept = [label for label in enum.labels if label in old.labels]
            if kept != list(old.labels):
                self.hazard("enum-change", f"type {enum.name}: values removed or reordered")
                self.notes.append(
                    f"type {enum.name}: removing or reordering enum values is not generated; "
                    "write that migration by hand"
                )
                continue
            for position, label in enumerate(enum.labels):
                if label in old.labels:
                    continue
                following = next((x for x in enum.labels[position + 1 :] if x in old.labels), None)
                preceding = next(
                    (x for x in reversed(enum.labels[:position]) if x in old.labels), None
                )
                # placed against a value that exists already (one added now may not yet)
                where = (
                    f" BEFORE {literal(following)}"
                    if following is not None
                    else f" AFTER {literal(preceding)}"
                    if preceding is not None
                    else ""
                )
                types.add(f"ALTER TYPE {enum.name} ADD VALUE IF NOT EXISTS {literal(label)}{where}")

    def sequences(self) -> None:
        expand = self.group("expand")
        current = {sequence.name: sequence for sequence in self.current.sequences}
        for sequence in self.desired.sequences:
            old = current.get(sequence.name)
            if old is None:
                expand.add(sequence_sql(sequence), f"DROP SEQUENCE IF EXISTS {sequence.name}")
            elif (old.increment, old.minimum, old.maximum, old.cache, old.cycle) != (
                sequence.increment,
                sequence.minimum,
                sequence.maximum,
                sequence.cache,
                sequence.cycle,
            ) or old.data_type != sequence.data_type:
                expand.add(
                    _alter_sequence(sequence),
                    _alter_sequence(old),
                )

    # ----------------------------------------------------------------------------- tables

    def tables(self) -> None:
        expand = self.group("expand")
        desired_tables = [t for t in self.desired.tables if not t.partitioned]
        for table in self.desired.tables:
            if table.partitioned:
                self.notes.append(f"{table.name}: partitioned tables are not diffed")
        # new tables first: an existing table's new foreign key may reference one
        for table in desired_tables:
            if self.current.table(table.name) is None:
                self.new_tables.add(table.name)
                expand.add(create_table_sql(table), f"DROP TABLE IF EXISTS {table.name}")
                for index in table.indexes:
                    if index.constraint is None:
                        expand.add(index.definition, f"DROP INDEX IF EXISTS {index.name}")
        for table in desired_tables:
            old = self.current.table(table.name)
            if old is not None:
                self.alter_table(old, table)
        # foreign keys of new tables once every new table exists
        for table in desired_tables:
            if table.name in self.new_tables:
                for constraint in table.constraints:
                    if constraint.kind == "foreign":
                        expand.add(
                            f"ALTER TABLE {table.name} ADD CONSTRAINT {constraint.name} "
                            f"{constraint.definition}",
                            f"ALTER TABLE {table.name} DROP CONSTRAINT IF EXISTS {constraint.name}",
                        )
        self.owned_sequences()

    def owned_sequences(self) -> None:
        current = {s.name: s for s in self.current.sequences}
        for sequence in self.desired.sequences:
            old = current.get(sequence.name)
            if sequence.owned_by and (old is None or old.owned_by != sequence.owned_by):
                self.group("expand").add(
                    f"ALTER SEQUENCE {sequence.name} OWNED BY {sequence.owned_by}"
                )

    def alter_table(self, old: Table, new: Table) -> None:
        expand = self.group("expand")
        contract = self.group("contract")
        name = new.name
        for column in new.columns:
            previous = old.column(column.name)
            if previous is not None and (
                previous.type != column.type or previous.collation != column.collation
            ):
                self.retyped.add((name, column.name))
        for column in new.columns:
            previous = old.column(column.name)
            if previous is None:
                self.add_column(new, column)
            else:
                self.alter_column(new, previous, column)
        for column in old.columns:
            if new.column(column.name) is None:
                self.hazard("drop-column", f"column {name}.{column.name}")
                self.recreate_views_reading(name, column.name)
                contract.add(
                    Statement(f"ALTER TABLE {name} DROP COLUMN IF EXISTS {column.name}"),
                    f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS "
                    f"{column_sql(column, with_not_null=column.default is not None)}",
                )
        if old.unlogged != new.unlogged:
            self.hazard("type-change", f"table {name}: SET {'UN' if new.unlogged else ''}LOGGED")
            contract.add(
                Statement(
                    f"ALTER TABLE {name} SET {'UNLOGGED' if new.unlogged else 'LOGGED'}",
                    "lockstep-ignore: table-rewrite -- allowed with --allow-hazard type-change",
                ),
                f"ALTER TABLE {name} SET {'LOGGED' if new.unlogged else 'UNLOGGED'}",
            )
        self.constraints(old, new)
        self.indexes(old, new)
        if old.comment != new.comment:
            expand.add(
                f"COMMENT ON TABLE {name} IS {_comment(new.comment)}",
                f"COMMENT ON TABLE {name} IS {_comment(old.comment)}",
            )

    def add_column(self, table: Table, column: Column) -> None:
        expand = self.group("expand")
        name = table.name
        volatile = volatile_default(column.default) or column.identity or column.generated
        if column.generated is not None or column.identity:
            # computed for every row: a rewrite under ACCESS EXCLUSIVE
            self.hazard("type-change", f"column {name}.{column.name} is filled for every row")
            self.group("contract").add(
                Statement(
                    f"ALTER TABLE {name} ADD COLUMN {column_sql(column)}",
                    "lockstep-ignore: adding-generated-stored-column, "
                    "adding-auto-increment-column -- allowed with --allow-hazard type-change",
                ),
                f"ALTER TABLE {name} DROP COLUMN IF EXISTS {column.name}",
            )
            return
        if not volatile and (column.default is not None or not column.not_null):
            # a constant default is stored in the catalog: no rewrite (PostgreSQL 11+)
            expand.add(
                f"ALTER TABLE {name} ADD COLUMN {column_sql(column)}",
                f"ALTER TABLE {name} DROP COLUMN IF EXISTS {column.name}",
            )
            return
        # NOT NULL without a usable default, or a volatile default: add it nullable, set the
        # default for new rows, then NOT NULL through a validated CHECK
        bare = Column(column.name, column.type, collation=column.collation)
        expand.add(
            f"ALTER TABLE {name} ADD COLUMN {column_sql(bare)}",
            f"ALTER TABLE {name} DROP COLUMN IF EXISTS {column.name}",
        )
        if column.default is not None:
            expand.add(
                f"ALTER TABLE {name} ALTER COLUMN {column.name} SET DEFAULT {column.default}"
            )
            self.hazard("backfill", f"column {name}.{column.name} = {column.default}")
            self.group("expand_backfill").add(
                Statement(
                    f"UPDATE {name} SET {column.name} = DEFAULT WHERE {column.name} IS NULL",
                    "one UPDATE of every existing row, allowed with --allow-hazard backfill",
                )
            )
        elif column.not_null:
            self.hazard("not-null-without-default", f"column {name}.{column.name} has no default")
        if column.not_null:
            self.not_null(table.name, column.name)

    def alter_column(self, table: Table, old: Column, new: Column) -> None:
        expand = self.group("expand")
        contract = self.group("contract")
        name = table.name
        target = f"{name}.{new.name}"
        alter = f"ALTER TABLE {name} ALTER COLUMN {new.name}"
        if old.type != new.type or old.collation != new.collation:
            self.recreate_views_reading(name, new.name)
            collate = f" COLLATE {new.collation}" if new.collation else ""
            if binary_coercible(old.type, new.type) and old.collation == new.collation:
                contract.add(
                    Statement(
                        f"{alter} TYPE {new.type}",
                        f"{_IGNORE_TYPE} -- {old.type} to {new.type} is binary-coercible: "
                        "no rewrite",
                    ),
                    f"{alter} TYPE {old.type}",
                )
            else:
                self.hazard("type-change", f"column {target}: {old.type} to {new.type}")
                direct = self.casts is None or (old.type, new.type) in self.casts
                via = "" if direct else "::text"
                note = "" if direct else " (no direct cast: through text; review the USING)"
                contract.add(
                    Statement(
                        f"{alter} TYPE {new.type}{collate} USING {new.name}{via}::{new.type}",
                        f"{_IGNORE_TYPE} -- allowed with --allow-hazard type-change{note}",
                    ),
                    f"{alter} TYPE {old.type} USING {new.name}::text::{old.type}",
                )
        if old.identity != new.identity:
            if new.identity and not old.identity:
                expand.add(
                    f"{alter} ADD GENERATED {new.identity.upper()} AS IDENTITY",
                    f"{alter} DROP IDENTITY IF EXISTS",
                )
            elif not new.identity:
                contract.add(
                    f"{alter} DROP IDENTITY IF EXISTS",
                    f"{alter} ADD GENERATED {old.identity.upper()} AS IDENTITY",
                )
            else:
                expand.add(
                    f"{alter} SET GENERATED {new.identity.upper()}",
                    f"{alter} SET GENERATED {old.identity.upper()}",
                )
        if old.generated != new.generated:
            self.hazard("type-change", f"column {target}: generated expression changes")
            self.notes.append(f"{target}: a changed generated expression is not generated")
        if old.default != new.default and not new.generated and not old.generated:
            if new.default is None:
                contract.add(f"{alter} DROP DEFAULT", f"{alter} SET DEFAULT {old.default}")
            else:
                expand.add(
                    f"{alter} SET DEFAULT {new.default}",
                    f"{alter} DROP DEFAULT"
                    if old.default is None
                    else f"{alter} SET DEFAULT {old.default}",
                )
        in_primary_key = any(
            c.kind == "primary" and new.name in c.columns
            for c in table_constraints(self.current, name)
        )
        if old.not_null and not new.not_null and in_primary_key:
            self.not_null_dropped.setdefault(name, []).append(new.name)
        elif old.not_null and not new.not_null:
            expand.add(
                Statement(
                    f"{alter} DROP NOT NULL",
                    "lockstep-ignore: ban-drop-not-null -- the desired schema allows NULL",
                ),
                f"{alter} SET NOT NULL",
            )
        elif new.not_null and not old.not_null:
            self.not_null(name, new.name, late=(name, new.name) in self.retyped)
        if old.comment != new.comment:
            expand.add(
                f"COMMENT ON COLUMN {target} IS {_comment(new.comment)}",
                f"COMMENT ON COLUMN {target} IS {_comment(old.comment)}",
            )

    def not_null(self, table: str, column: str, *, late: bool = False) -> None:
        """SET NOT NULL through a CHECK added NOT VALID, validated in a later migration: the
        SET NOT NULL then uses the check instead of scanning (PostgreSQL 12+). `late`: after
        the column's type change (contract)."""
        add, validate, finish = (
            ("contract", "contract_validate", "contract_not_null")
            if late
            else ("expand", "expand_validate", "contract")
        )
        _, bare_table = split_name(table)
        check = _short(bare_table.strip('"') + "_" + column.strip('"'), "_not_null")
        if bare_table.startswith('"') or column.startswith('"'):
            check = f'"{check.strip(chr(34))}"'
        self.group(add).add(
            f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID",
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}",
        )
        self.group(validate).add(
            f"ALTER TABLE {table} VALIDATE CONSTRAINT {check}",
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}, ADD CONSTRAINT {check} "
            f"CHECK ({column} IS NOT NULL) NOT VALID",
        )
        contract = self.group(finish)
        contract.add(
            f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL",
            f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL",
        )
        contract.add(
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}",
            f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} IS NOT NULL) NOT VALID",
        )

    # ------------------------------------------------------------------------ constraints

    def constraints(self, old: Table, new: Table) -> None:
        name = new.name
        old = self.renamed_constraints(old, new)
        # constraints that go, first: a new primary key needs the old one gone
        for constraint in old.constraints:
            if new.constraint(constraint.name) is None:
                self.drop_constraint(old, constraint, changed=False)
        for constraint in new.constraints:
            previous = old.constraint(constraint.name)
            late = constraint.kind == "check" and any(
                (name, column) in self.retyped for column in constraint.columns
            )
            if previous is not None and previous.definition == constraint.definition:
                if late:
                    # the type change would re-check it under ACCESS EXCLUSIVE: drop it
                    # first, add it back NOT VALID after, validate it later
                    self.drop_constraint(old, previous, changed=False, first=True)
                    self.add_constraint(new, constraint, replacing=None, late=True)
                elif constraint.validated and not previous.validated:
                    self.group("expand_validate").add(
                        f"ALTER TABLE {name} VALIDATE CONSTRAINT {constraint.name}"
                    )
                continue
            if previous is not None:
                self.drop_constraint(old, previous, changed=not late, first=late)
            self.add_constraint(new, constraint, replacing=previous, late=late)
        for column in self.not_null_dropped.pop(name, []):
            # after the primary key it belonged to is gone
            self.group("contract").add(
                f"ALTER TABLE {name} ALTER COLUMN {column} DROP NOT NULL",
                f"ALTER TABLE {name} ALTER COLUMN {column} SET NOT NULL",
            )

    def renamed_constraints(self, old: Table, new: Table) -> Table:
        """A constraint that only changed its name (a table rename leaves `users_pkey` on
        `members`) is renamed, not dropped and rebuilt; `old` is returned as after that."""
        gone = [c for c in old.constraints if new.constraint(c.name) is None]
        added = [c for c in new.constraints if old.constraint(c.name) is None]
        constraints = list(old.constraints)
        indexes = list(old.indexes)
        for constraint in gone:
            match = next(
                (
                    c
                    for c in added
                    if (c.kind, c.definition) == (constraint.kind, constraint.definition)
                ),
                None,
            )
            if match is None:
                continue
            added.remove(match)
            self.group("expand").add(
                f"ALTER TABLE {new.name} RENAME CONSTRAINT {constraint.name} TO {match.name}",
                f"ALTER TABLE {new.name} RENAME CONSTRAINT {match.name} TO {constraint.name}",
            )
            constraints[constraints.index(constraint)] = dataclasses.replace(
                constraint, name=match.name
            )
            # the index behind a unique or primary key constraint is renamed with it
            for position, index in enumerate(indexes):
                if index.constraint == constraint.name:
                    desired = next((i for i in new.indexes if i.constraint == match.name), None)
                    if desired is not None:
                        indexes[position] = dataclasses.replace(
                            index,
                            name=desired.name,
                            definition=desired.definition,
                            constraint=match.name,
                        )
        return dataclasses.replace(old, constraints=tuple(constraints), indexes=tuple(indexes))

    def add_constraint(
        self,
        table: Table,
        constraint: Constraint,
        replacing: Constraint | None,
        *,
        late: bool = False,
    ) -> None:
        name = table.name
        add = f"ALTER TABLE {name} ADD CONSTRAINT {constraint.name}"
        drop_down = f"ALTER TABLE {name} DROP CONSTRAINT IF EXISTS {constraint.name}"
        if constraint.kind in ("check", "foreign"):
            definition = constraint.definition.removesuffix(" NOT VALID")
            adding, validating = (
                ("contract", "contract_validate") if late else ("expand", "expand_validate")
            )
            self.group(adding).add(f"{add} {definition} NOT VALID", drop_down)
            if constraint.validated:
                self.group(validating).add(
                    f"ALTER TABLE {name} VALIDATE CONSTRAINT {constraint.name}",
                    f"{drop_down}, ADD CONSTRAINT {constraint.name} {definition} NOT VALID",
                )
            return
        if constraint.kind == "exclude":
            self.hazard("exclusion-constraint", f"{name}: {constraint.name}")
            self.group("contract").add(
                Statement(
                    f"{add} {constraint.definition}",
                    "lockstep-ignore: adding-exclusion-constraint -- allowed with "
                    "--allow-hazard exclusion-constraint",
                ),
                drop_down,
            )
            return
        # unique or primary key: build the index concurrently, then attach it
        index = next((i for i in table.indexes if i.constraint == constraint.name), None)
        if index is None:
            raise DiffError(f"{name}: no index found behind constraint {constraint.name}")
        schema, index_name = split_name(index.name)
        old_table = self.current.table(name)
        taken = {split_name(i.name)[1] for i in old_table.indexes} if old_table else set()
        # an index of that name exists now (the constraint changes, or a plain index that
        # goes has its name): build beside it, rename once the old one is gone
        collides = replacing is not None or index_name in taken
        build_name = _short(index_name, "_new") if collides else index_name
        built = f"{schema}.{build_name}"
        self.group("expand_indexes").add(
            concurrent_index_sql(index, build_name if collides else None),
            f"DROP INDEX CONCURRENTLY IF EXISTS {built}",
        )
        target = self.group("expand_validate") if constraint.kind == "unique" else None
        kind = "UNIQUE" if constraint.kind == "unique" else "PRIMARY KEY"
        statements: list[str] = []
        if collides:
            statements.append(f"ALTER INDEX {built} RENAME TO {index_name}")
        statements.append(f"{add} {kind} USING INDEX {index_name}")
        if target is None or collides:
            # a primary key needs its columns NOT NULL first (they are, by then, in contract);
            # a replaced constraint needs the old one dropped (contract) first
            target = self.group("contract")
        for statement in statements:
            target.add(statement)
        target.down.insert(0, Statement(drop_down))

    def drop_constraint(
        self, table: Table, constraint: Constraint, *, changed: bool, first: bool = False
    ) -> None:
        name = table.name
        definition = constraint.definition
        if first:
            # before the type changes of `contract`
            contract = self.group("contract")
            contract.up.insert(
                0, Statement(f"ALTER TABLE {name} DROP CONSTRAINT IF EXISTS {constraint.name}")
            )
            contract.down.append(
                Statement(f"ALTER TABLE {name} ADD CONSTRAINT {constraint.name} {definition}")
            )
            return
        restore = f"ALTER TABLE {name} ADD CONSTRAINT {constraint.name} {definition}"
        if constraint.kind in ("check", "foreign") and changed:
            # dropped and re-added NOT VALID in one expand transaction: both are instant
            self.group("expand").add(
                f"ALTER TABLE {name} DROP CONSTRAINT IF EXISTS {constraint.name}",
                restore.removesuffix(" NOT VALID") + " NOT VALID",
            )
            return
        self.group("contract").add(
            f"ALTER TABLE {name} DROP CONSTRAINT IF EXISTS {constraint.name}",
            restore.removesuffix(" NOT VALID") + " NOT VALID"
            if constraint.kind in ("check", "foreign")
            else restore,
        )

    # ------------------------------------------------------------------------------ indexes

    def indexes(self, old: Table, new: Table) -> None:
        current = {i.name: i for i in old.indexes if i.constraint is None}
        taken = {i.name for i in old.indexes}
        for index in new.indexes:
            if index.constraint is not None:
                continue
            previous = current.pop(index.name, None)
            if previous is not None and previous.definition == index.definition:
                continue
            if index.name not in taken:
                self.group("expand_indexes").add(
                    concurrent_index_sql(index), f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}"
                )
                continue
            # the name is in use (the index changes, or a constraint that goes owns it): build
            # the new one beside it, and swap the names once the old one is gone
            schema, bare = split_name(index.name)
            temporary = _short(bare, "_new")
            self.group("expand_indexes").add(
                concurrent_index_sql(index, temporary),
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema}.{temporary}",
            )
            if previous is not None:
                self.group("contract_indexes").add(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {previous.name}",
                    concurrent_index_sql(previous),
                )
            self.group("contract").add(
                f"ALTER INDEX IF EXISTS {schema}.{temporary} RENAME TO {bare}",
                f"ALTER INDEX IF EXISTS {index.name} RENAME TO {temporary}",
            )
        for index in current.values():
            self.group("contract_indexes").add(
                f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}", concurrent_index_sql(index)
            )

    # -------------------------------------------------------------------------------- views

    def recreate_views_reading(self, table: str, column: str) -> None:
        """Views that read a column about to be dropped or retyped go first, and come back
        (in their desired form, if still desired) once the column has changed."""
        for view in self.current.views:
            if (table, column) in view.reads_columns:
                self._recreate(view)

    def _recreate(self, view: View) -> None:
        if view.name in self.views_to_recreate:
            return
        self.views_to_recreate[view.name] = view
        for other in self.current.views:  # views on this view go too
            if view.name in other.reads:
                self._recreate(other)

    def views(self) -> None:
        current = {view.name: view for view in self.current.views}
        desired = {view.name: view for view in self.desired.views}
        expand, contract = self.group("expand"), self.group("contract")
        changed: set[str] = set(self.views_to_recreate)
        replaced: list[View] = []
        for view in desired.values():
            old = current.get(view.name)
            if old is None:
                continue
            if (old.definition, old.columns, old.materialized) == (
                view.definition,
                view.columns,
                view.materialized,
            ):
                continue
            prefix = view.columns[: len(old.columns)] == old.columns
            if (
                prefix
                and not view.materialized
                and not old.materialized
                and (view.name not in changed)
            ):
                replaced.append(view)
            else:
                changed.add(view.name)
        # drops: views that go, and views recreated, dependants first
        dropping = [current[name] for name in current if name not in desired or name in changed]
        for view in _view_order(dropping):
            if view.name not in desired:
                self.hazard("drop-view", f"view {view.name}")
            self._drop_view_first(view)
        # a new view that reads a column retyped in contract is created after that
        late = {
            v.name
            for v in desired.values()
            if v.name not in current and any(read in self.retyped for read in v.reads_columns)
        }
        grew = True
        while grew:  # and the new views that read those
            more = {
                v.name
                for v in desired.values()
                if v.name not in current and v.name not in late and set(v.reads) & late
            }
            late |= more
            grew = bool(more)
        created = [v for v in desired.values() if v.name not in current and v.name not in late]
        recreated = [desired[name] for name in changed | late if name in desired]
        for view in _view_order(created):
            expand.add(view_sql(view), drop_view_sql(view))
            self.view_extras(view, expand)
        for view in _view_order(replaced):
            expand.add(view_sql(view, replace=True), view_sql(current[view.name], replace=True))
        for view in _view_order(recreated):
            contract.add(view_sql(view))
            self.view_extras(view, contract)

    def _drop_view_first(self, view: View) -> None:
        """Views are dropped before anything else in `contract` (readers of a view before
        it: called in reverse dependency order, each goes in front of the previous)."""
        contract = self.group("contract")
        contract.up.insert(0, Statement(drop_view_sql(view)))
        contract.down.append(Statement(view_sql(view)))

    def view_extras(self, view: View, group: Group) -> None:
        for index in view.indexes:
            group.add(index.definition)
        if view.comment is not None:
            kind = "MATERIALIZED VIEW" if view.materialized else "VIEW"
            group.add(f"COMMENT ON {kind} {view.name} IS {_comment(view.comment)}")

    # ----------------------------------------------------------------------------- comments

    def comments(self) -> None:
        expand = self.group("expand")
        for table in self.desired.tables:
            if table.name in self.new_tables:
                if table.comment is not None:
                    expand.add(f"COMMENT ON TABLE {table.name} IS {_comment(table.comment)}")
                for column in table.columns:
                    if column.comment is not None:
                        expand.add(
                            f"COMMENT ON COLUMN {table.name}.{column.name} IS "
                            f"{_comment(column.comment)}"
                        )
        current_views = {view.name: view for view in self.current.views}
        for view in self.desired.views:
            old = current_views.get(view.name)
            if (
                old is not None
                and old.comment != view.comment
                and view.name not in (self.views_to_recreate)
            ):
                kind = "MATERIALIZED VIEW" if view.materialized else "VIEW"
                expand.add(f"COMMENT ON {kind} {view.name} IS {_comment(view.comment)}")
        current_enums = {enum.name: enum for enum in self.current.enums}
        for enum in self.desired.enums:
            old_comment = current_enums[enum.name].comment if enum.name in current_enums else None
            if enum.comment != old_comment:
                expand.add(f"COMMENT ON TYPE {enum.name} IS {_comment(enum.comment)}")
        current_schemas = dict(self.current.schema_comments)
        for schema, comment in self.desired.schema_comments:
            if current_schemas.get(schema) != comment:
                expand.add(f"COMMENT ON SCHEMA {schema} IS {_comment(comment)}")

    # -------------------------------------------------------------------------------- drops

    def drops(self) -> None:
        contract = self.group("contract")
        dropped = [
            t
            for t in self.current.tables
            if self.desired.table(t.name) is None and not t.partitioned
        ]
        for table in _referencing_first(dropped):
            self.hazard("drop-table", f"table {table.name}")
            contract.add(f"DROP TABLE IF EXISTS {table.name}", create_table_sql(table))
        desired_sequences = {s.name for s in self.desired.sequences}
        for sequence in self.current.sequences:
            if sequence.name not in desired_sequences:
                self.hazard("drop-sequence", f"sequence {sequence.name}")
                contract.add(f"DROP SEQUENCE IF EXISTS {sequence.name}", sequence_sql(sequence))
        desired_enums = {e.name for e in self.desired.enums}
        for enum in self.current.enums:
            if enum.name not in desired_enums:
                self.hazard("drop-type", f"type {enum.name}")
                contract.add(f"DROP TYPE IF EXISTS {enum.name}", enum_sql(enum))
        for schema in self.current.schemas:
            if schema not in self.desired.schemas:
                self.hazard("drop-schema", f"schema {schema}")
                contract.add(
                    f"DROP SCHEMA IF EXISTS {schema}", f"CREATE SCHEMA IF NOT EXISTS {schema}"
                )


def table_constraints(catalog: Catalog, table: str) -> tuple[Constraint, ...]:
    found = catalog.table(table)
    return found.constraints if found is not None else ()


def _alter_sequence(sequence: SequenceDef) -> str:
    cycle = "CYCLE" if sequence.cycle else "NO CYCLE"
    return (
        f"ALTER SEQUENCE {sequence.name} AS {sequence.data_type} INCREMENT BY "
        f"{sequence.increment} MINVALUE {sequence.minimum} MAXVALUE {sequence.maximum} "
        f"CACHE {sequence.cache} {cycle}"
    )


_Named = TypeVar("_Named", Table, View)


def _after(items: Sequence[_Named], first: Callable[[_Named], Iterable[str]]) -> list[_Named]:
    """`items` in an order where each comes after the items (of the list) that `first`
    names for it; cycles are broken where they close."""
    names = {item.name: item for item in items}
    ordered: list[_Named] = []
    done: set[str] = set()

    def visit(item: _Named, path: tuple[str, ...]) -> None:
        if item.name in done or item.name in path:
            return
        for name in first(item):
            if name in names:
                visit(names[name], (*path, item.name))
        done.add(item.name)
        ordered.append(item)

    for item in sorted(items, key=lambda i: i.name):
        visit(item, ())
    return ordered


def _referencing_first(tables: Sequence[Table]) -> list[Table]:
    """Tables ordered so that one referencing another (by a foreign key) comes first."""

    def referencing(table: Table) -> list[str]:
        return [
            other.name
            for other in tables
            if other is not table and any(c.references == table.name for c in other.constraints)
        ]

    return _after(tables, referencing)


def _view_order(views: Sequence[View]) -> list[View]:
    """Views in an order where each comes after the views (of the list) it reads."""
    return _after(views, lambda view: view.reads)


def _header(group: Group) -> str:
    how = (
        "runs in one transaction"
        if group.transactional
        else "runs statement by statement, outside a transaction"
    )
    return (
        f"-- generated by lockstep diff: {group.name}\n"
        f"-- lockstep:phase={group.phase}\n"
        f"-- {how}\n\n"
    )
