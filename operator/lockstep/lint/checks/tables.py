"""CREATE TABLE and ALTER TABLE."""

from __future__ import annotations

from lockstep.lint.checks.base import Context, bare, sql_name
from lockstep.lint.checks.columns import (
    TABLE_CONSTRAINT_WORDS,
    ColumnDef,
    TableConstraint,
    check_column_type,
    parse_column,
    parse_table_constraint,
)
from lockstep.lint.facts import (
    SERIAL_TYPES,
    has_detach_partition_concurrently,
    parse_type,
    set_not_null_uses_validated_check,
    type_change_is_safe,
    type_change_may_lose_data,
)

# ---------------------------------------------------------------------------- CREATE TABLE


def create_table(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    outcome.mark("additive")
    i = ctx.start
    if view.at(i, "IF", "NOT", "EXISTS"):
        outcome.if_not_exists = True
        i += 3
    outcome.robust = outcome.if_not_exists
    name, i = ctx.table_name(i)
    if name is None:
        ctx.unrecognized(i, "CREATE TABLE without a table name")
        return
    table = bare(name)
    ctx.state.created_tables.add(table)
    if view.at(i, "PARTITION", "OF"):
        parent, i = view.qualified(i + 2)
        if parent is not None:
            outcome.add_table(parent)
            # Creating a partition locks the parent ACCESS EXCLUSIVE.
            outcome.take_lock("ACCESS EXCLUSIVE")
    elif view.word(i) == "OF":
        i += 2
    if view.word(i) == "(":
        close = view.close_of(i)
        if view.word(close + 1) == "AS":
            outcome.kind = "CREATE TABLE AS"
            outcome.take_lock("ACCESS SHARE")
            return
        _table_elements(ctx, table, i + 1, close)
    elif view.word(i) == "AS":
        outcome.kind = "CREATE TABLE AS"
        outcome.take_lock("ACCESS SHARE")


def _table_elements(ctx: Context, table: str, start: int, end: int) -> None:
    view = ctx.view
    seen: set[str] = set()
    for piece_start, piece_end in view.split(start, end):
        word = view.word(piece_start)
        if word in TABLE_CONSTRAINT_WORDS:
            constraint = parse_table_constraint(view, piece_start, piece_end)
            _remember_constraint(ctx, table, constraint, validated=True)
            if constraint.references is not None:
                ctx.outcome.add_table(constraint.references)
                ctx.outcome.take_lock("SHARE ROW EXCLUSIVE")
            continue
        if word == "LIKE":
            continue
        column = parse_column(view, piece_start, piece_end)
        if column is None:
            continue
        if column.name in seen:
            ctx.outcome.hit(
                "ban-duplicate-column-assignments",
                column.offset,
                f"Column {column.name} is declared twice in CREATE TABLE {table}.",
            )
        seen.add(column.name)
        check_column_type(ctx, column.type, column.type_offset, column.name)
        _remember_column(ctx, table, column)
        if column.references is not None:
            ctx.outcome.add_table(column.references[0])
            ctx.outcome.take_lock("SHARE ROW EXCLUSIVE")


def _remember_column(ctx: Context, table: str, column: ColumnDef) -> None:
    state = ctx.state
    if column.type is not None:
        state.column_types[(table, column.name)] = column.type
    if column.checks:
        state.checked_columns.add((table, column.name))
    if any(is_not_null for _, is_not_null in column.checks):
        state.proven_not_null.add((table, column.name))


def _remember_constraint(
    ctx: Context, table: str, constraint: TableConstraint, validated: bool
) -> None:
    state = ctx.state
    if constraint.kind != "check":
        return
    for column in constraint.columns:
        state.checked_columns.add((table, column))
    if constraint.not_null_column is None:
        return
    if validated:
        state.proven_not_null.add((table, constraint.not_null_column))
    if constraint.name is not None:
        state.not_null_checks[(table, constraint.name)] = constraint.not_null_column


# ---------------------------------------------------------------------------- ALTER TABLE


def alter_table(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    i = ctx.start
    if view.at(i, "IF", "EXISTS"):
        i += 2
    if view.word(i) == "ALL":
        ctx.unrecognized(i, "ALTER TABLE ALL IN TABLESPACE")
        return
    if view.word(i) == "ONLY":
        i += 1
    name, i = ctx.table_name(i)
    if name is None:
        ctx.unrecognized(i, "ALTER TABLE without a table name")
        return
    if view.word(i) == "*":
        i += 1
    if i >= view.n:
        ctx.unrecognized(i - 1, "ALTER TABLE without an action")
        return
    table = bare(name)
    is_new = ctx.state.is_new_table(table)
    outcome.only_new_tables = is_new
    actions = _AlterTable(ctx, name, table, is_new)
    for start, end in view.split(i, view.n):
        actions.action(start, end)
    actions.finish()


class _AlterTable:
    """The actions of one ALTER TABLE statement."""

    def __init__(self, ctx: Context, name: str, table: str, is_new: bool) -> None:
        self.ctx = ctx
        self.view = ctx.view
        self.outcome = ctx.outcome
        self.state = ctx.state
        self.name = name
        self.sql = sql_name(name)
        self.table = table
        self.is_new = is_new
        self.type_changes: dict[str, int] = {}
        self.set_not_nulls: set[str] = set()
        self.robust_parts: list[bool] = []
        self.dropped_if_exists: set[str] = set()
        self.added_columns: set[str] = set()

    def lock(self, mode: str) -> None:
        self.outcome.take_lock(mode)
        if mode != "NONE":
            self.outcome.ddl_tables.add(self.table)

    def action(self, start: int, end: int) -> None:
        view = self.view
        word = view.word(start)
        if word == "ADD":
            j = start + 1
            if view.word(j) == "COLUMN":
                self.add_column(j + 1, end)
            elif view.word(j) in TABLE_CONSTRAINT_WORDS:
                self.add_constraint(j, end)
            else:
                self.add_column(j, end)
        elif word == "DROP":
            self.drop(start, end)
        elif word == "ALTER":
            j = start + 1
            if view.word(j) == "CONSTRAINT":
                self.lock("ACCESS EXCLUSIVE")
                self.outcome.mixed = True
            else:
                if view.word(j) == "COLUMN":
                    j += 1
                self.alter_column(j, end)
        elif word == "VALIDATE" and view.word(start + 1) == "CONSTRAINT":
            self.validate(start, end)
        elif word == "RENAME":
            self.rename(start, end)
        elif word == "SET":
            self.set(start, end)
        elif word == "RESET":
            self.lock("SHARE UPDATE EXCLUSIVE")
            self.outcome.mixed = True
        elif word in ("ENABLE", "DISABLE"):
            trigger = view.find("TRIGGER", start, end) != -1
            self.lock("SHARE ROW EXCLUSIVE" if trigger else "ACCESS EXCLUSIVE")
            self.outcome.mixed = True
        elif word == "CLUSTER" and view.word(start + 1) == "ON":
            self.lock("SHARE UPDATE EXCLUSIVE")
            self.outcome.mixed = True
        elif word in ("FORCE", "NO", "INHERIT", "OF", "NOT", "OWNER", "REPLICA"):
            self.lock("ACCESS EXCLUSIVE")
            self.outcome.mixed = True
        elif view.at(start, "ATTACH", "PARTITION"):
            self.attach_partition(start)
        elif view.at(start, "DETACH", "PARTITION"):
            self.detach_partition(start, end)
        else:
            self.ctx.unrecognized(start, f"ALTER TABLE action {view.text_of(start, end)!r}")

    def finish(self) -> None:
        for column, offset in self.type_changes.items():
            if column in self.set_not_nulls:
                self.outcome.hit(
                    "changing-column-type-with-not-null",
                    offset,
                    f"Column {column} changes type and becomes NOT NULL in one ALTER TABLE: "
                    "the NOT NULL scan runs under the type change's lock.",
                )
        if self.robust_parts:
            self.outcome.robust = all(self.robust_parts)
            self.outcome.if_not_exists = all(self.robust_parts)

    # ------------------------------------------------------------ ADD COLUMN

    def add_column(self, start: int, end: int) -> None:
        view = self.view
        outcome = self.outcome
        ctx = self.ctx
        self.lock("ACCESS EXCLUSIVE")
        if_not_exists = view.at(start, "IF", "NOT", "EXISTS")
        self.robust_parts.append(if_not_exists)
        if if_not_exists:
            start += 3
        column = parse_column(view, start, end)
        if column is None:
            ctx.unrecognized(start, "ADD COLUMN")
            return
        if column.name in self.added_columns:
            outcome.hit(
                "ban-duplicate-column-assignments",
                column.offset,
                f"Column {column.name} is added twice in one ALTER TABLE {self.name}.",
            )
        self.added_columns.add(column.name)
        check_column_type(ctx, column.type, column.type_offset, column.name)
        _remember_column(ctx, self.table, column)
        if column.references is not None:
            outcome.add_table(column.references[0])
            outcome.ddl_tables.add(bare(column.references[0]))
        outcome.mark("additive")
        if self.is_new:
            return
        target = f"{self.name}.{column.name}"
        version = ctx.version
        auto_increment = column.identity is not None or (
            column.type is not None and column.type.name in SERIAL_TYPES
        )
        generated_stored = column.generated is not None and (
            column.generated[1] == "stored"
            or (column.generated[1] == "unspecified" and version < (18, 0))
        )
        if column.default is not None and column.default.rewrites_table(version):
            default = column.default
            if version < (11, 0):
                why = (
                    f"ADD COLUMN {target} DEFAULT {default.text} rewrites the table on "
                    f"PostgreSQL {version[0]}: before 11 every default is written to every row"
                )
            elif default.volatile:
                why = (
                    f"ADD COLUMN {target} DEFAULT {default.text} calls volatile "
                    f"{', '.join(default.volatile)}(): the default is computed for every row, "
                    "a table rewrite"
                )
            else:
                why = (
                    f"ADD COLUMN {target} DEFAULT {default.text} calls "
                    f"{', '.join(default.unknown)}(), which is not known to be non-volatile; "
                    "it is treated as volatile, so this is assumed to rewrite the table"
                )
            outcome.hit(
                "adding-field-with-default",
                default.offset,
                why + " under ACCESS EXCLUSIVE, blocking reads and writes.",
                f"ALTER TABLE {self.sql} ADD COLUMN {sql_name(column.name)} "
                f"{_type_text(column)}; ALTER TABLE {self.sql} ALTER COLUMN "
                f"{sql_name(column.name)} SET DEFAULT {default.text}; then backfill existing "
                "rows in batches.",
            )
            outcome.rewrites = True
            outcome.mark("long-locking")
        if generated_stored and column.generated is not None:
            outcome.hit(
                "adding-generated-stored-column",
                column.generated[0],
                f"ADD COLUMN {target} GENERATED ... STORED computes the value for every row: "
                "a table rewrite under ACCESS EXCLUSIVE.",
            )
            outcome.rewrites = True
            outcome.mark("long-locking")
        if auto_increment:
            offset = column.identity if column.identity is not None else column.type_offset
            outcome.hit(
                "adding-auto-increment-column",
                offset,
                f"ADD COLUMN {target} as a serial or identity column fills every row from the "
                "sequence: a table rewrite under ACCESS EXCLUSIVE.",
            )
            outcome.rewrites = True
            outcome.mark("long-locking")
        if (
            column.not_null is not None
            and column.default is None
            and not auto_increment
            and column.generated is None
        ):
            outcome.hit(
                "adding-required-field",
                column.not_null,
                f"ADD COLUMN {target} NOT NULL without a DEFAULT fails on a table with rows, "
                "and the running version's INSERTs that omit it fail.",
                f"ALTER TABLE {self.sql} ADD COLUMN {sql_name(column.name)} {_type_text(column)} "
                "NOT NULL DEFAULT <constant>; or add it nullable, backfill, then use the "
                "CHECK ... NOT VALID pattern for NOT NULL.",
            )
            outcome.mark("breaking")
        if column.primary_key is not None:
            outcome.hit(
                "adding-serial-primary-key-field",
                column.primary_key,
                f"ADD COLUMN {target} PRIMARY KEY builds the primary key index under ACCESS "
                "EXCLUSIVE.",
            )
            outcome.mark("long-locking")
        if column.unique is not None:
            outcome.hit(
                "disallowed-unique-constraint",
                column.unique,
                f"ADD COLUMN {target} UNIQUE builds a unique index under ACCESS EXCLUSIVE.",
            )
            outcome.mark("long-locking")
        if column.references is not None:
            outcome.hit(
                "adding-foreign-key-constraint",
                column.references[1],
                f"ADD COLUMN {target} REFERENCES {column.references[0]} validates the new "
                "foreign key with a scan while holding SHARE ROW EXCLUSIVE on both tables.",
                f"ALTER TABLE {self.sql} ADD COLUMN {sql_name(column.name)} "
                f"{_type_text(column)}; ALTER TABLE {self.sql} ADD CONSTRAINT "
                f"{sql_name(self.table + '_' + column.name + '_fkey')} FOREIGN KEY "
                f"({sql_name(column.name)}) REFERENCES {sql_name(column.references[0])} "
                "NOT VALID; then VALIDATE CONSTRAINT in a later migration.",
            )
            outcome.mark("long-locking")
        for offset, _ in column.checks:
            outcome.hit(
                "constraint-missing-not-valid",
                offset,
                f"ADD COLUMN {target} with a CHECK checks every row under ACCESS EXCLUSIVE.",
            )
            outcome.mark("long-locking")

    # ------------------------------------------------------------ ADD CONSTRAINT

    def add_constraint(self, start: int, end: int) -> None:
        outcome = self.outcome
        constraint = parse_table_constraint(self.view, start, end)
        self.lock("SHARE ROW EXCLUSIVE" if constraint.kind == "foreign" else "ACCESS EXCLUSIVE")
        if constraint.references is not None:
            outcome.add_table(constraint.references)
            # SHARE ROW EXCLUSIVE on the referenced table too: its writes wait as well.
            outcome.ddl_tables.add(bare(constraint.references))
        _remember_constraint(self.ctx, self.table, constraint, validated=not constraint.not_valid)
        outcome.mixed = True
        # ADD CONSTRAINT has no IF NOT EXISTS; a DROP CONSTRAINT IF EXISTS before it in the
        # same statement makes a re-run safe.
        self.robust_parts.append(constraint.name in self.dropped_if_exists)
        label = f"constraint {constraint.name}" if constraint.name else "the constraint"
        if constraint.not_valid and constraint.name is not None:
            self.state.not_valid[(self.table, constraint.name)] = (
                self.state.transaction,
                constraint.offset,
            )
        if self.is_new:
            return
        if constraint.kind in ("check", "foreign") and not constraint.not_valid:
            written = self.view.text_of(start, end)
            if constraint.name is None:
                written = f"CONSTRAINT <name> {written}"
            two_steps = (
                f"ALTER TABLE {sql_name(self.name)} ADD {written} NOT VALID; then, in a later "
                f"migration, ALTER TABLE {sql_name(self.name)} VALIDATE CONSTRAINT "
                f"{sql_name(constraint.name) if constraint.name else '<name>'};"
            )
            if constraint.kind == "check":
                outcome.hit(
                    "constraint-missing-not-valid",
                    constraint.offset,
                    f"ADD CHECK ({label}) on {self.name} without NOT VALID checks every row "
                    "under ACCESS EXCLUSIVE.",
                    two_steps,
                )
            else:
                outcome.hit(
                    "adding-foreign-key-constraint",
                    constraint.offset,
                    f"ADD FOREIGN KEY ({label}) on {self.name} without NOT VALID scans the "
                    f"table while holding SHARE ROW EXCLUSIVE on {self.name} and "
                    f"{constraint.references or 'the referenced table'}.",
                    two_steps,
                )
            outcome.mark("long-locking")
        elif constraint.kind == "unique" and not constraint.using_index:
            outcome.hit(
                "disallowed-unique-constraint",
                constraint.offset,
                f"ADD UNIQUE ({label}) on {self.name} builds its index under ACCESS EXCLUSIVE.",
            )
            outcome.mark("long-locking")
        elif constraint.kind == "primary" and not constraint.using_index:
            outcome.hit(
                "adding-serial-primary-key-field",
                constraint.offset,
                f"ADD PRIMARY KEY ({label}) on {self.name} builds its index under ACCESS "
                "EXCLUSIVE.",
            )
            outcome.mark("long-locking")
        elif constraint.kind == "exclude":
            outcome.hit(
                "adding-exclusion-constraint",
                constraint.offset,
                f"ADD EXCLUDE ({label}) on {self.name} builds its index and checks every row "
                "under ACCESS EXCLUSIVE; it cannot be added NOT VALID.",
            )
            outcome.mark("long-locking")
        elif constraint.kind == "unknown":
            self.ctx.unrecognized(start, "ADD CONSTRAINT")

    def validate(self, start: int, end: int) -> None:
        view = self.view
        self.lock("SHARE UPDATE EXCLUSIVE")
        self.outcome.mixed = True
        if not view.is_name(start + 2):
            return
        constraint = view.name(start + 2)
        key = (self.table, constraint)
        added = self.state.not_valid.pop(key, None)
        column = self.state.not_null_checks.get(key)
        if column is not None:
            self.state.proven_not_null.add((self.table, column))
        if added is not None and added[0] == self.state.transaction:
            self.outcome.hit(
                "constraint-missing-not-valid",
                view.offset(start),
                f"VALIDATE CONSTRAINT {constraint} runs in the same transaction as its "
                "ADD ... NOT VALID, so the scan runs while the ADD's lock is still held.",
                "Validate the constraint in a later migration (its own transaction).",
            )
            self.outcome.mark("long-locking")

    # ------------------------------------------------------------ DROP

    def drop(self, start: int, end: int) -> None:
        view = self.view
        outcome = self.outcome
        self.lock("ACCESS EXCLUSIVE")
        j = start + 1
        if view.word(j) == "CONSTRAINT":
            j += 1
            if_exists = view.at(j, "IF", "EXISTS")
            self.robust_parts.append(if_exists)
            if if_exists and view.is_name(j + 2):
                self.dropped_if_exists.add(view.name(j + 2))
            outcome.mixed = True
            return
        if view.word(j) == "COLUMN":
            j += 1
        if_exists = view.at(j, "IF", "EXISTS")
        self.robust_parts.append(if_exists)
        if if_exists:
            j += 2
        column = view.name(j) if view.is_name(j) else "?"
        if self.is_new:
            outcome.mixed = True
            return
        outcome.hit(
            "ban-drop-column",
            view.offset(start),
            f"DROP COLUMN {self.name}.{column} breaks the running version if it still uses "
            "the column, and deletes its data.",
        )
        outcome.mark("breaking", "data-losing")

    # ------------------------------------------------------------ ALTER COLUMN

    def alter_column(self, start: int, end: int) -> None:
        view = self.view
        outcome = self.outcome
        if not view.is_name(start):
            self.ctx.unrecognized(start, "ALTER COLUMN")
            return
        column = view.name(start)
        j = start + 1
        if view.at(j, "SET", "DATA", "TYPE"):
            self.change_type(column, j, j + 3, end)
        elif view.word(j) == "TYPE":
            self.change_type(column, j, j + 1, end)
        elif view.at(j, "SET", "NOT", "NULL"):
            self.set_not_null(column, j)
        elif view.at(j, "DROP", "NOT", "NULL"):
            self.lock("ACCESS EXCLUSIVE")
            outcome.mixed = True
            if not self.is_new:
                outcome.hit(
                    "ban-drop-not-null",
                    view.offset(j),
                    f"DROP NOT NULL on {self.name}.{column} lets NULLs in; readers that "
                    "assume a value may break.",
                )
        elif view.at(j, "SET", "EXPRESSION"):
            self.lock("ACCESS EXCLUSIVE")
            self.rewrite(view.offset(j), f"SET EXPRESSION on {self.name}.{column}")
        elif view.at(j, "SET", "STATISTICS") or view.at(j, "SET", "(") or view.word(j) == "RESET":
            self.lock("SHARE UPDATE EXCLUSIVE")
            outcome.mixed = True
        elif view.word(j) in ("SET", "DROP", "ADD", "RESTART"):
            # SET/DROP DEFAULT, identity and sequence options, SET STORAGE/COMPRESSION,
            # DROP EXPRESSION: catalog changes under ACCESS EXCLUSIVE, no scan.
            self.lock("ACCESS EXCLUSIVE")
            outcome.mixed = True
        else:
            self.ctx.unrecognized(start, f"ALTER COLUMN {column} action")

    def change_type(self, column: str, keyword: int, start: int, end: int) -> None:
        view = self.view
        outcome = self.outcome
        state = self.state
        self.lock("ACCESS EXCLUSIVE")
        using = view.find("USING", start, end)
        type_end = min(x for x in (using, view.find("COLLATE", start, end), end) if x != -1)
        new_type = parse_type(view, start, type_end)
        key = (self.table, column)
        old_type = state.column_types.get(key)
        if new_type is not None:
            state.column_types[key] = new_type
        check_column_type(self.ctx, new_type, view.offset(start), column)
        self.type_changes[column] = view.offset(keyword)
        outcome.mixed = True
        if self.is_new:
            return
        has_using = using != -1
        safe = (
            old_type is not None
            and new_type is not None
            and not has_using
            and type_change_is_safe(old_type, new_type)
        )
        written = new_type.text if new_type is not None else "the new type"
        if not safe:
            if old_type is not None:
                change = f"from {old_type.text} to {written}"
                unknown = ""
            else:
                change = f"to {written}"
                unknown = (
                    " The current type is not known from this file; if the change is "
                    "binary-coercible (varchar(n) to a larger varchar or text, numeric "
                    "precision increase, cidr to inet), review and suppress it."
                )
            outcome.hit(
                "changing-column-type",
                view.offset(keyword),
                f"ALTER COLUMN {self.name}.{column} TYPE {change} rewrites the table and its "
                f"indexes under ACCESS EXCLUSIVE, and the running version may not handle the "
                f"new type.{unknown}",
            )
            outcome.rewrites = True
            outcome.mark("breaking", "long-locking")
            if new_type is None or type_change_may_lose_data(new_type, has_using):
                outcome.mark("data-losing")
        if key in state.checked_columns:
            outcome.hit(
                "changing-column-type-with-check",
                view.offset(keyword),
                f"{self.name}.{column} has a CHECK constraint: changing its type re-checks "
                "every row under ACCESS EXCLUSIVE.",
            )
            outcome.mark("long-locking")

    def set_not_null(self, column: str, keyword: int) -> None:
        outcome = self.outcome
        self.lock("ACCESS EXCLUSIVE")
        self.set_not_nulls.add(column)
        outcome.mixed = True
        if self.is_new:
            return
        outcome.mark("breaking")
        proven = (
            set_not_null_uses_validated_check(self.ctx.version)
            and (self.table, column) in self.state.proven_not_null
        )
        if proven:
            return
        check = sql_name(f"{self.table}_{column}_not_null")
        outcome.hit(
            "adding-not-nullable-field",
            self.view.offset(keyword),
            f"SET NOT NULL on {self.name}.{column} scans the whole table under ACCESS "
            f"EXCLUSIVE (no validated CHECK ({column} IS NOT NULL) precedes it in this file), "
            "and the running version's writes of NULL start failing.",
            f"ALTER TABLE {self.sql} ADD CONSTRAINT {check} CHECK ({sql_name(column)} IS NOT "
            f"NULL) NOT VALID; in a later migration ALTER TABLE {self.sql} VALIDATE CONSTRAINT "
            f"{check}; then ALTER COLUMN {sql_name(column)} SET NOT NULL (PostgreSQL 12+, it "
            "uses the validated check instead of a scan) and drop the check.",
        )
        outcome.mark("long-locking")

    # ------------------------------------------------------------ RENAME, SET, partitions

    def rename(self, start: int, end: int) -> None:
        view = self.view
        outcome = self.outcome
        self.lock("ACCESS EXCLUSIVE")
        j = start + 1
        if view.word(j) == "TO":
            new_name = view.name(j + 1) if view.is_name(j + 1) else "?"
            if self.table in self.state.created_tables:
                self.state.created_tables.add(bare(new_name))
            if self.is_new:
                outcome.mixed = True
                return
            outcome.hit(
                "renaming-table",
                view.offset(start),
                f"RENAME {self.name} TO {new_name} breaks the running version, which uses the "
                "old name.",
            )
            outcome.mark("breaking")
            return
        if view.word(j) == "CONSTRAINT":
            outcome.mixed = True
            return
        if view.word(j) == "COLUMN":
            j += 1
        if self.is_new:
            outcome.mixed = True
            return
        old = view.name(j) if view.is_name(j) else "?"
        new = view.name(j + 2) if view.is_name(j + 2) else "?"
        outcome.hit(
            "renaming-column",
            view.offset(start),
            f"RENAME COLUMN {self.name}.{old} TO {new} breaks the running version, which "
            "uses the old name.",
        )
        outcome.mark("breaking")

    def set(self, start: int, end: int) -> None:
        view = self.view
        outcome = self.outcome
        what = view.word(start + 1)
        if what == "SCHEMA":
            self.lock("ACCESS EXCLUSIVE")
            if self.is_new:
                outcome.mixed = True
                return
            outcome.hit(
                "renaming-table",
                view.offset(start),
                f"SET SCHEMA moves {self.name} to another schema, which breaks the running "
                "version's queries that name it.",
            )
            outcome.mark("breaking")
        elif what in ("TABLESPACE", "LOGGED", "UNLOGGED") or view.at(start + 1, "ACCESS", "METHOD"):
            self.lock("ACCESS EXCLUSIVE")
            self.rewrite(view.offset(start), f"SET {what} on {self.name}")
        elif (what == "WITHOUT" and view.word(start + 2) == "CLUSTER") or what == "(":
            self.lock("SHARE UPDATE EXCLUSIVE")
            outcome.mixed = True
        else:
            self.lock("ACCESS EXCLUSIVE")
            outcome.mixed = True

    def rewrite(self, offset: int, what: str) -> None:
        self.outcome.mixed = True
        if self.is_new:
            return
        self.outcome.hit(
            "table-rewrite",
            offset,
            f"{what} rewrites the table under ACCESS EXCLUSIVE, blocking reads and writes.",
        )
        self.outcome.rewrites = True
        self.outcome.mark("long-locking")

    def attach_partition(self, start: int) -> None:
        partition, _ = self.view.qualified(start + 2)
        if partition is not None:
            self.outcome.add_table(partition)
        # SHARE UPDATE EXCLUSIVE on the parent, ACCESS EXCLUSIVE on the partition while its
        # rows are checked against the bound (skipped when a matching CHECK exists).
        self.lock("ACCESS EXCLUSIVE")
        self.outcome.mark("long-locking")

    def detach_partition(self, start: int, end: int) -> None:
        view = self.view
        outcome = self.outcome
        outcome.mixed = True
        partition, after = view.qualified(start + 2)
        if partition is not None:
            outcome.add_table(partition)
        mode = view.word(after)
        version = self.ctx.version
        if mode == "CONCURRENTLY":
            self.lock("SHARE UPDATE EXCLUSIVE")
            outcome.transactional = False
            if not has_detach_partition_concurrently(version):
                outcome.hit(
                    "requires-newer-postgres",
                    view.offset(after),
                    f"DETACH PARTITION ... CONCURRENTLY needs PostgreSQL 14; the configured "
                    f"version is {version[0]}.{version[1]}.",
                )
        elif mode == "FINALIZE":
            self.lock("SHARE UPDATE EXCLUSIVE")
        else:
            self.lock("ACCESS EXCLUSIVE")
            if self.is_new:
                return
            outcome.hit(
                "require-concurrent-partition-detach",
                view.offset(start),
                f"DETACH PARTITION {partition or ''} takes ACCESS EXCLUSIVE on {self.name}.",
                None
                if has_detach_partition_concurrently(version)
                else "DETACH PARTITION ... CONCURRENTLY needs PostgreSQL 14+; upgrade, or "
                "detach in a maintenance window.",
            )


def _type_text(column: ColumnDef) -> str:
    return column.type.text if column.type is not None else "<type>"
