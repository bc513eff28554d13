"""SELECT, INSERT, UPDATE, DELETE, MERGE and COPY, from the facts read off PostgreSQL's parse
tree (lint/datafacts.py), or from tokens when the parser rejected the statement and a reviewer
said to go on."""

from __future__ import annotations

from lockstep.lint.checks.base import Context, bare
from lockstep.lint.datafacts import Change


def _keyword_offset(ctx: Context, keyword: str) -> int:
    view = ctx.view
    for i, word in enumerate(view.words):
        if word == keyword:
            return view.offset(i)
    return ctx.statement_offset


def _duplicates(ctx: Context, change: Change) -> None:
    statement = "UPDATE" if change.verb == "UPDATE" else "INSERT"
    for name, offset in change.duplicates:
        ctx.outcome.hit(
            "ban-duplicate-column-assignments",
            ctx.view.base + offset if offset >= 0 else ctx.statement_offset,
            f"Column {name} is assigned twice in one {statement}: PostgreSQL rejects "
            "the statement.",
        )


def data_statement(ctx: Context) -> None:
    outcome = ctx.outcome
    facts = ctx.data
    if facts is None:
        _from_tokens(ctx)
        return
    outcome.kind = facts.root
    for change in facts.changes:
        if outcome.kind == "SELECT":
            # WITH moved AS (DELETE ... RETURNING *) SELECT ...: the change is what matters.
            outcome.kind = change.verb
        outcome.take_lock("ROW EXCLUSIVE")
        if change.verb == "INSERT":
            _insert(ctx, change)
        elif change.verb in ("UPDATE", "DELETE"):
            _update_or_delete(ctx, change)
        else:
            _merge(ctx, change)
    if not facts.changes:
        _select(ctx, facts.reads, facts.locking)


def _select(ctx: Context, reads: tuple[str, ...], locking: bool) -> None:
    outcome = ctx.outcome
    for name in reads:
        outcome.add_table(name)
    outcome.take_lock("ROW SHARE" if locking else "ACCESS SHARE")
    outcome.mark("additive")
    view = ctx.view
    # SELECT set_config('lock_timeout', '2s', false) sets a timeout like SET does.
    for i in range(view.n - 4):
        if view.words[i] == "SET_CONFIG" and view.words[i + 1] == "(":
            setting = view.texts[i + 2].lower()
            if setting in ("lock_timeout", "statement_timeout"):
                outcome.settings[setting] = view.texts[i + 4].strip().lower() not in (
                    "0",
                    "",
                    "default",
                )


def _insert(ctx: Context, change: Change) -> None:
    outcome = ctx.outcome
    if change.table is not None:
        outcome.add_table(change.table)
    _duplicates(ctx, change)
    if change.upsert_update:
        outcome.mixed = True
    outcome.mark("additive")


def _update_or_delete(ctx: Context, change: Change) -> None:
    outcome = ctx.outcome
    verb = change.verb
    name = change.table
    offset = _keyword_offset(ctx, verb)
    outcome.mixed = True
    if name is None:
        return
    outcome.add_table(name)
    _duplicates(ctx, change)
    if ctx.state.is_new_table(name):
        return
    outcome.data_changes.append((bare(name), offset, verb))
    if verb == "DELETE":
        outcome.mark("data-losing")
    if not change.has_where:
        outcome.hit(
            "backfill-without-batching",
            offset,
            f"{verb} on {name} without WHERE changes every row in one transaction, locking "
            "them all until it commits.",
        )
        # every row's old values are overwritten (or gone): not undone by a down migration
        outcome.mark("long-locking", "data-losing")


def _merge(ctx: Context, change: Change) -> None:
    outcome = ctx.outcome
    outcome.mixed = True
    name = change.table
    if name is None:
        return
    outcome.add_table(name)
    if not ctx.state.is_new_table(name):
        outcome.data_changes.append((bare(name), _keyword_offset(ctx, "MERGE"), "MERGE"))


def _from_tokens(ctx: Context) -> None:
    """A data statement without a parse tree (a syntax error ignored after review): read its
    target and WHERE from tokens."""
    view = ctx.view
    outcome = ctx.outcome
    kind = outcome.kind
    if kind in ("SELECT", "WITH"):
        if kind == "WITH":
            ctx.unrecognized(0, "WITH statement")
        else:
            outcome.take_lock("ACCESS SHARE")
            outcome.mark("additive")
        return
    outcome.take_lock("ROW EXCLUSIVE")
    i = ctx.start
    if view.word(i) in ("INTO", "FROM"):
        i += 1
    if view.word(i) == "ONLY":
        i += 1
    name, _ = view.qualified(i)
    if name is None:
        ctx.unrecognized(0, kind)
        return
    outcome.add_table(name)
    if kind == "INSERT":
        outcome.mark("additive")
        return
    outcome.mixed = True
    if ctx.state.is_new_table(name):
        return
    offset = view.offset(0)
    outcome.data_changes.append((bare(name), offset, kind))
    if kind == "DELETE":
        outcome.mark("data-losing")
    if kind in ("UPDATE", "DELETE") and view.find("WHERE", 0) == -1:
        outcome.hit(
            "backfill-without-batching",
            offset,
            f"{kind} on {name} without WHERE changes every row in one transaction, locking "
            "them all until it commits.",
        )
        outcome.mark("long-locking", "data-losing")


def copy(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    name, _ = view.qualified(ctx.start)
    if name is not None:
        outcome.add_table(name)
    if view.find("FROM", ctx.start) != -1:
        outcome.take_lock("ROW EXCLUSIVE")
        outcome.mixed = True
    else:
        outcome.take_lock("ACCESS SHARE")
        outcome.mark("additive")
