"""CREATE INDEX, DROP INDEX and REINDEX."""

from __future__ import annotations

from lockstep.lint.checks.base import Context, bare
from lockstep.lint.facts import concurrent_index_may_corrupt, has_reindex_concurrently


def _corruption_warning(ctx: Context, offset: int, what: str) -> None:
    version = ctx.version
    if concurrent_index_may_corrupt(version):
        ctx.outcome.hit(
            "index-corruption-pg14",
            offset,
            f"{what} on PostgreSQL {version[0]}.{version[1]} can silently corrupt the index "
            "(fixed in 14.4).",
        )


def create_index(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    state = ctx.state
    unique = view.word(1) == "UNIQUE"
    i = ctx.start
    concurrently = view.word(i) == "CONCURRENTLY"
    if concurrently:
        i += 1
    if view.at(i, "IF", "NOT", "EXISTS"):
        outcome.if_not_exists = True
        i += 3
    index_name: str | None = None
    if view.word(i) != "ON":
        index_name, i = view.qualified(i)
    if view.word(i) != "ON":
        ctx.unrecognized(i, "CREATE INDEX without ON <table>")
        return
    i += 1
    if view.word(i) == "ONLY":
        i += 1
    table_offset = view.offset(i)
    table, i = ctx.table_name(i)
    if table is None:
        ctx.unrecognized(i, "CREATE INDEX without a table name")
        return
    if view.word(i) == "USING":
        i += 2
    columns = len(view.split(i + 1, view.close_of(i))) if view.word(i) == "(" else 0
    if index_name is not None:
        state.created_indexes.add(bare(index_name))
    is_new = state.is_new_table(table)
    outcome.only_new_tables = is_new
    outcome.robust = outcome.if_not_exists and index_name is not None
    if index_name is None:
        outcome.robust_hint = " (IF NOT EXISTS needs an index name; a retry builds a second index)"
    label = index_name or "(unnamed)"
    if concurrently:
        outcome.take_lock("SHARE UPDATE EXCLUSIVE")
        outcome.transactional = False
        if index_name is not None:
            schema = table.rsplit(".", 1)[0] if "." in table else None
            qualified = (
                index_name if "." in index_name or schema is None else f"{schema}.{index_name}"
            )
            outcome.concurrent_index = qualified
        _corruption_warning(ctx, view.offset(ctx.start), "CREATE INDEX CONCURRENTLY")
    else:
        outcome.take_lock("SHARE")
        outcome.ddl_tables.add(bare(table))
    if unique:
        outcome.mixed = True
    else:
        outcome.mark("additive")
    if not concurrently and not is_new:
        outcome.hit(
            "require-concurrent-index-creation",
            table_offset,
            f"CREATE INDEX {label} ON {table} without CONCURRENTLY blocks writes to {table} "
            "for the whole build.",
            f"CREATE {'UNIQUE ' if unique else ''}INDEX CONCURRENTLY IF NOT EXISTS "
            f"{index_name or '<name>'} ON {table} (...); lockstep runs it outside the "
            "migration transaction.",
        )
        outcome.mark("long-locking")
    if unique and not is_new:
        outcome.hit(
            "unique-on-existing-rows",
            view.offset(1),
            f"Unique index {label} on {table}: the build fails if existing rows hold duplicates.",
        )
    if not unique and columns > 3:
        outcome.hit(
            "index-too-many-columns",
            view.offset(i),
            f"Index {label} has {columns} columns; a non-unique index on more than three "
            "rarely helps.",
        )


def drop_index(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    outcome.mixed = True
    i = ctx.start
    concurrently = view.word(i) == "CONCURRENTLY"
    if concurrently:
        i += 1
    if view.at(i, "IF", "EXISTS"):
        outcome.if_not_exists = True
        i += 2
    outcome.robust = outcome.if_not_exists
    names = [
        name for start, _ in view.split(i, view.n) for name in [view.qualified(start)[0]] if name
    ]
    if concurrently:
        outcome.take_lock("SHARE UPDATE EXCLUSIVE")
        outcome.transactional = False
        return
    outcome.take_lock("ACCESS EXCLUSIVE")
    if names and all(bare(name) in ctx.state.created_indexes for name in names):
        outcome.only_new_tables = True
        return
    outcome.hit(
        "require-concurrent-index-deletion",
        view.offset(0),
        f"DROP INDEX {', '.join(names)} without CONCURRENTLY takes ACCESS EXCLUSIVE on the "
        "table: it waits behind running queries while blocking new ones.",
        f"DROP INDEX CONCURRENTLY IF EXISTS {names[0] if names else '<name>'};",
    )


def reindex(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    i = ctx.start
    concurrently = False
    if view.word(i) == "(":
        close = view.close_of(i)
        concurrently = view.find("CONCURRENTLY", i + 1, close) != -1
        i = close + 1
    target = view.word(i)
    i += 1
    if view.word(i) == "CONCURRENTLY":
        concurrently = True
        i += 1
    if target in ("SCHEMA", "DATABASE", "SYSTEM"):
        outcome.transactional = False
    elif target == "TABLE":
        ctx.table_name(i)
    version = ctx.version
    if concurrently:
        outcome.take_lock("SHARE UPDATE EXCLUSIVE")
        outcome.transactional = False
        outcome.mark("additive")
        if not has_reindex_concurrently(version):
            outcome.hit(
                "requires-newer-postgres",
                view.offset(0),
                f"REINDEX CONCURRENTLY needs PostgreSQL 12; the configured version is "
                f"{version[0]}.{version[1]}.",
            )
        _corruption_warning(ctx, view.offset(0), "REINDEX CONCURRENTLY")
        return
    # SHARE on the table (writes blocked), ACCESS EXCLUSIVE on the index being rebuilt.
    outcome.take_lock("ACCESS EXCLUSIVE")
    outcome.mark("long-locking")
    outcome.hit(
        "require-concurrent-reindex",
        view.offset(0),
        f"REINDEX {target} without CONCURRENTLY blocks writes and the reads that use the "
        "index for the whole rebuild.",
        "REINDEX ... CONCURRENTLY (PostgreSQL 12+)."
        if has_reindex_concurrently(version)
        else "PostgreSQL before 12 has no REINDEX CONCURRENTLY: build a new index "
        "concurrently, then drop the old one.",
    )
