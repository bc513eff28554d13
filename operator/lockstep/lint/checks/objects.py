"""DROP, TRUNCATE, maintenance statements, and DDL on objects other than tables and indexes."""

from __future__ import annotations

from lockstep.lint.checks.base import Context, bare
from lockstep.lint.facts import enum_add_value_runs_in_transaction

_DROPPED_RELATIONS = frozenset({"TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE"})
_NON_TRANSACTIONAL_DROPS = frozenset({"DATABASE", "TABLESPACE", "SUBSCRIPTION"})


def _names(ctx: Context, start: int) -> list[tuple[str, int]]:
    """The comma-separated names from `start` on, each with its token index."""
    view = ctx.view
    names: list[tuple[str, int]] = []
    for piece_start, _ in view.split(start, view.n):
        j = piece_start
        if view.word(j) == "ONLY":
            j += 1
        name, _ = view.qualified(j)
        if name is not None:
            names.append((name, j))
    return names


# ---------------------------------------------------------------------------- DROP


def drop(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    what = outcome.kind.removeprefix("DROP ")
    i = ctx.start
    if view.at(i, "IF", "EXISTS"):
        outcome.if_not_exists = True
        i += 2
    outcome.robust = outcome.if_not_exists
    names = _names(ctx, i)
    if what in _NON_TRANSACTIONAL_DROPS:
        outcome.transactional = False
    if what in _DROPPED_RELATIONS or what in ("SCHEMA", "TRIGGER", "POLICY", "RULE"):
        outcome.take_lock("ACCESS EXCLUSIVE")
    if what == "TABLE":
        existing = [(name, index) for name, index in names if not ctx.state.is_new_table(name)]
        for _, index in names:
            ctx.table_name(index)
        for name, index in existing:
            outcome.hit(
                "ban-drop-table",
                view.offset(index),
                f"DROP TABLE {name} breaks the running version if it still uses the table, "
                "and deletes its data.",
            )
        if existing:
            outcome.mark("breaking", "data-losing")
        else:
            outcome.mixed = True
            outcome.only_new_tables = True
        return
    for name, _ in names:
        if what in _DROPPED_RELATIONS:
            outcome.add_table(name)
    if what == "TRIGGER" and (on := view.find("ON", i)) != -1:
        ctx.table_name(on + 1, ddl=False)
    if what == "SCHEMA":
        for name, index in names:
            outcome.hit(
                "ban-drop-schema",
                view.offset(index),
                f"DROP SCHEMA {name} removes every object in it with its data.",
            )
        outcome.mark("breaking", "data-losing")
    elif what == "DATABASE":
        for name, index in names:
            outcome.hit(
                "ban-drop-database", view.offset(index), f"DROP DATABASE {name} destroys it."
            )
        outcome.mark("breaking", "data-losing")
    elif what in ("TRIGGER", "OWNED", "ROLE", "USER", "GROUP", "TABLESPACE", "SUBSCRIPTION"):
        outcome.mixed = True
    else:
        # A dropped view, sequence, type, function or extension may be what the running
        # version uses.
        outcome.mark("breaking")


def truncate(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    outcome.take_lock("ACCESS EXCLUSIVE")
    i = ctx.start
    if view.word(i) == "TABLE":
        i += 1
    names = _names(ctx, i)
    for name, _ in names:
        outcome.add_table(name)
        outcome.ddl_tables.add(bare(name))
    cascade = view.contains(i, view.n, "CASCADE")
    if cascade != -1:
        outcome.hit(
            "ban-truncate-cascade",
            view.offset(cascade),
            "TRUNCATE ... CASCADE also empties every table that references "
            f"{', '.join(name for name, _ in names)} through a foreign key, recursively.",
            f"TRUNCATE {', '.join(name for name, _ in names)}; (without CASCADE, naming "
            "every table you mean)",
        )
    if names and all(ctx.state.is_new_table(name) for name, _ in names) and cascade == -1:
        outcome.mixed = True
        outcome.only_new_tables = True
        return
    outcome.mark("data-losing")
    existing = [name for name, _ in names if not ctx.state.is_new_table(name)]
    if existing:
        outcome.hit(
            "ban-truncate",
            view.offset(0),
            f"TRUNCATE {', '.join(existing)} deletes every row of a table that exists before "
            "this migration.",
        )


# ---------------------------------------------------------------------------- maintenance


def vacuum(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    outcome.transactional = False
    i = ctx.start
    full_at = -1
    if view.word(i) == "(":
        close = view.close_of(i)
        for start, end in view.split(i + 1, close):
            switched_off = end > start + 1 and view.texts[start + 1].upper() in (
                "FALSE",
                "OFF",
                "0",
            )
            if view.word(start) == "FULL" and not switched_off:
                full_at = start
        i = close + 1
    while view.word(i) in ("FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"):
        if view.word(i) == "FULL":
            full_at = i
        i += 1
    for name, _ in _names(ctx, i):
        outcome.add_table(name)
    if full_at == -1:
        outcome.take_lock("SHARE UPDATE EXCLUSIVE")
        outcome.mark("additive")
        return
    outcome.take_lock("ACCESS EXCLUSIVE")
    outcome.rewrites = True
    outcome.mark("long-locking")
    outcome.hit(
        "prefer-repack",
        view.offset(full_at),
        "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE, blocking reads and writes "
        "for the whole rewrite.",
    )


def cluster(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    i = ctx.start
    if view.word(i) == "(":
        i = view.after_group(i)
    if view.word(i) == "VERBOSE":
        i += 1
    name, _ = view.qualified(i)
    if name is None:
        # CLUSTER without a table re-clusters every clustered table; it cannot run in a
        # transaction block.
        outcome.transactional = False
    else:
        outcome.add_table(name)
    outcome.take_lock("ACCESS EXCLUSIVE")
    outcome.rewrites = True
    outcome.mark("long-locking")
    outcome.hit(
        "prefer-repack",
        view.offset(0),
        "CLUSTER rewrites the table under ACCESS EXCLUSIVE, blocking reads and writes for the "
        "whole rewrite.",
    )


def analyze(ctx: Context) -> None:
    view = ctx.view
    i = ctx.start
    if view.word(i) == "(":
        i = view.after_group(i)
    if view.word(i) == "VERBOSE":
        i += 1
    for name, _ in _names(ctx, i):
        ctx.outcome.add_table(name)
    ctx.outcome.take_lock("SHARE UPDATE EXCLUSIVE")
    ctx.outcome.mark("additive")


def refresh_materialized_view(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    i = ctx.start
    concurrently = view.word(i) == "CONCURRENTLY"
    if concurrently:
        i += 1
    name, _ = view.qualified(i)
    if name is not None:
        outcome.add_table(name)
    if concurrently:
        outcome.take_lock("EXCLUSIVE")
        outcome.mixed = True
    else:
        # Reads of the view wait for the whole refresh.
        outcome.take_lock("ACCESS EXCLUSIVE")
        outcome.mark("long-locking")


def lock_table(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    i = ctx.start
    if view.word(i) == "TABLE":
        i += 1
    names = [name for name, _ in _names(ctx, i)]
    for name in names:
        outcome.add_table(name)
    mode = "ACCESS EXCLUSIVE"
    in_at = view.find("IN", i)
    mode_at = view.find("MODE", i)
    if in_at != -1 and mode_at > in_at:
        mode = " ".join(view.words[in_at + 1 : mode_at])
    mode = mode if mode in _LOCK_NAMES else "ACCESS EXCLUSIVE"
    outcome.take_lock(mode)
    outcome.mixed = True
    if names and all(ctx.state.is_new_table(name) for name in names):
        return
    outcome.hit(
        "explicit-table-lock",
        view.offset(0),
        f"LOCK {', '.join(names) or 'TABLE'} IN {mode} MODE holds the lock until the migration "
        "commits, blocking conflicting queries for the whole migration.",
    )


_LOCK_NAMES = frozenset(
    {
        "ACCESS SHARE",
        "ROW SHARE",
        "ROW EXCLUSIVE",
        "SHARE UPDATE EXCLUSIVE",
        "SHARE",
        "SHARE ROW EXCLUSIVE",
        "EXCLUSIVE",
        "ACCESS EXCLUSIVE",
    }
)


# ---------------------------------------------------------------------------- types, domains


def alter_type(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    name, i = view.qualified(ctx.start)
    label = name or "?"
    if view.at(i, "ADD", "VALUE"):
        outcome.mark("additive")
        j = i + 2
        outcome.if_not_exists = view.at(j, "IF", "NOT", "EXISTS")
        outcome.robust = outcome.if_not_exists
        if not enum_add_value_runs_in_transaction(ctx.version):
            outcome.transactional = False
        if view.find("BEFORE", j) == -1 and view.find("AFTER", j) == -1:
            outcome.hit(
                "require-enum-value-ordering",
                view.offset(i),
                f"ALTER TYPE {label} ADD VALUE without BEFORE or AFTER appends the value, "
                "which decides how it sorts against the others.",
            )
    elif view.at(i, "RENAME", "VALUE"):
        outcome.mark("breaking")
        outcome.hit(
            "renaming-enum-value",
            view.offset(i),
            f"ALTER TYPE {label} RENAME VALUE breaks the running version, which writes the "
            "old value.",
        )
    elif view.word(i) in ("RENAME", "SET") or view.at(i, "DROP", "ATTRIBUTE"):
        outcome.mark("breaking")
    else:
        outcome.mixed = True


def create_domain(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    outcome.mark("additive")
    check = view.find("CHECK", ctx.start)
    if check != -1:
        outcome.hit(
            "ban-create-domain-with-constraint",
            view.offset(check),
            "CREATE DOMAIN with a CHECK: changing the constraint later re-checks every column "
            "that uses the domain.",
        )


def alter_domain(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    name, i = view.qualified(ctx.start)
    adds = view.word(i) == "ADD" and view.contains(i, view.n, "NOT", "VALID") == -1
    if adds or view.at(i, "SET", "NOT", "NULL"):
        # Every table with a column of the domain is locked and scanned.
        outcome.take_lock("SHARE")
        outcome.mark("long-locking")
        outcome.hit(
            "ban-alter-domain-with-add-constraint",
            view.offset(i),
            f"ALTER DOMAIN {name or '?'} {'ADD CONSTRAINT' if adds else 'SET NOT NULL'} checks "
            "every column of every table that uses the domain.",
        )
    elif view.word(i) == "RENAME":
        outcome.mark("breaking")
    else:
        outcome.mixed = True


# ---------------------------------------------------------------------------- schemas, views


def alter_schema(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    name, i = view.qualified(ctx.start)
    if view.at(i, "RENAME", "TO"):
        new = view.name(i + 2) if view.is_name(i + 2) else "?"
        outcome.mark("breaking")
        outcome.hit(
            "renaming-schema",
            view.offset(i),
            f"ALTER SCHEMA {name or '?'} RENAME TO {new} breaks every query of the running "
            "version that names the schema.",
        )
    else:
        outcome.mixed = True


def alter_view(ctx: Context) -> None:
    """ALTER VIEW / ALTER MATERIALIZED VIEW."""
    view = ctx.view
    outcome = ctx.outcome
    i = ctx.start
    if view.at(i, "IF", "EXISTS"):
        i += 2
    name, i = view.qualified(i)
    if name is not None:
        outcome.add_table(name)
    outcome.take_lock("ACCESS EXCLUSIVE")
    if view.at(i, "RENAME", "TO") or view.at(i, "SET", "SCHEMA"):
        outcome.mark("breaking")
        outcome.hit(
            "renaming-table",
            view.offset(i),
            f"Renaming or moving view {name or '?'} breaks the running version, which uses the "
            "old name.",
        )
    elif view.word(i) == "RENAME" and view.find("TO", i) != -1:
        outcome.mark("breaking")
        outcome.hit(
            "renaming-column",
            view.offset(i),
            f"Renaming a column of view {name or '?'} breaks the running version, which uses "
            "the old name.",
        )
    else:
        outcome.mixed = True


def alter_index(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    i = ctx.start
    if view.at(i, "IF", "EXISTS"):
        i += 2
    if view.word(i) == "ALL":
        outcome.take_lock("ACCESS EXCLUSIVE")
        outcome.mixed = True
        return
    name, i = view.qualified(i)
    outcome.mixed = True
    if view.word(i) == "RENAME":
        outcome.take_lock(
            "SHARE UPDATE EXCLUSIVE" if ctx.version >= (12, 0) else "ACCESS EXCLUSIVE"
        )
    elif view.at(i, "SET", "TABLESPACE"):
        outcome.take_lock("ACCESS EXCLUSIVE")
        outcome.rewrites = True
        outcome.mark("long-locking")
        outcome.hit(
            "table-rewrite",
            view.offset(i),
            f"ALTER INDEX {name or '?'} SET TABLESPACE copies the index under ACCESS EXCLUSIVE.",
        )
    elif view.word(i) in ("SET", "RESET", "ATTACH"):
        outcome.take_lock("SHARE UPDATE EXCLUSIVE")
    else:
        outcome.take_lock("ACCESS EXCLUSIVE")


def alter_sequence(ctx: Context) -> None:
    ctx.outcome.take_lock("SHARE ROW EXCLUSIVE")
    ctx.outcome.mixed = True


# ---------------------------------------------------------------------------- everything else


def comment(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    outcome.mark("additive")
    i = ctx.start
    if view.word(i) != "ON":
        return
    target = view.word(i + 1)
    name, _ = view.qualified(i + 2)
    if name is None:
        return
    if target == "COLUMN" and "." in name:
        name = name.rsplit(".", 1)[0]
    if target in ("TABLE", "COLUMN", "VIEW", "MATERIALIZED", "INDEX", "SEQUENCE"):
        outcome.add_table(name)
        outcome.take_lock("SHARE UPDATE EXCLUSIVE")


def create_trigger(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    on = view.find("ON", ctx.start)
    if on != -1:
        name, _ = view.qualified(on + 1)
        if name is not None:
            outcome.add_table(name)
    outcome.take_lock("SHARE ROW EXCLUSIVE")
    outcome.mixed = True


_CREATE_IF_NOT_EXISTS = frozenset(
    {
        "CREATE SCHEMA",
        "CREATE SEQUENCE",
        "CREATE EXTENSION",
        "CREATE MATERIALIZED VIEW",
        "CREATE FOREIGN TABLE",
        "CREATE STATISTICS",
        "CREATE SERVER",
        "CREATE COLLATION",
    }
)
_CREATE_OR_REPLACE = frozenset(
    {
        "CREATE VIEW",
        "CREATE FUNCTION",
        "CREATE PROCEDURE",
        "CREATE TRIGGER",
        "CREATE RULE",
        "CREATE AGGREGATE",
        "CREATE LANGUAGE",
        "CREATE TRANSFORM",
    }
)


def create_object(ctx: Context) -> None:
    """CREATE of a non-table object (schema, sequence, type, function, view, extension, ...)."""
    view = ctx.view
    outcome = ctx.outcome
    kind = outcome.kind
    outcome.if_not_exists = view.at(ctx.start, "IF", "NOT", "EXISTS")
    replaces = view.at(1, "OR", "REPLACE")
    if kind in _CREATE_IF_NOT_EXISTS:
        outcome.robust = outcome.if_not_exists
    elif kind in _CREATE_OR_REPLACE:
        outcome.robust = replaces
    if replaces:
        outcome.mixed = True
    outcome.mark("additive")
    if kind in ("CREATE DATABASE", "CREATE TABLESPACE", "CREATE SUBSCRIPTION"):
        outcome.transactional = False


def alter_object(ctx: Context) -> None:
    """ALTER of an object whose changes do not lock tables (function, role, extension...)."""
    ctx.outcome.mixed = True
    if ctx.outcome.kind == "ALTER SYSTEM":
        ctx.outcome.transactional = False


def neutral(ctx: Context) -> None:
    """Statements that change no schema and no data (SHOW, LISTEN, DISCARD, ...)."""
    ctx.outcome.mark("additive")
    if ctx.outcome.kind == "DISCARD" and ctx.view.word(1) == "ALL":
        ctx.outcome.transactional = False


def grant(ctx: Context) -> None:
    ctx.outcome.mark("additive")


def revoke(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    outcome.mixed = True
    on = view.find("ON", ctx.start)
    # REVOKE role FROM user (membership) has no ON; both can break the running version.
    target = view.text_of(on + 1, view.find("FROM", on)) if on != -1 else "a role membership"
    outcome.mark("breaking")
    outcome.hit(
        "ban-revoke",
        view.offset(0),
        f"REVOKE takes away privileges on {' '.join(target.split()) or '?'}: the running "
        "version's queries that need them fail with permission denied.",
    )


def opaque(ctx: Context) -> None:
    """DO, CALL, EXECUTE: code the lint cannot see into."""
    ctx.outcome.take_lock("ACCESS EXCLUSIVE")
    ctx.outcome.mixed = True
    ctx.outcome.unanalysable = True
    ctx.outcome.hit(
        "unrecognized-statement",
        ctx.view.offset(0),
        f"{ctx.outcome.kind} runs code the lint cannot inspect; it could not be analysed, "
        "review it by hand.",
    )
