"""SET, RESET and transaction control."""

from __future__ import annotations

import re

from lockstep.lint.checks.base import Context
from lockstep.lint.tokens import NUMBER, STRING

TIMEOUT_SETTINGS = ("lock_timeout", "statement_timeout")
_ZERO = re.compile(r"0+(\.0*)?\s*(us|ms|s|min|h|d)?")


def set_statement(ctx: Context) -> None:
    view = ctx.view
    outcome = ctx.outcome
    outcome.mark("additive")
    i = ctx.start
    if view.word(i) in ("SESSION", "LOCAL"):
        i += 1
    if not view.is_name(i):
        return
    setting = view.name(i)
    if setting not in TIMEOUT_SETTINGS or view.word(i + 1) not in ("TO", "="):
        return
    value = i + 2
    if value >= view.n:
        return
    if view.kinds[value] in (STRING, NUMBER):
        # 0, in any unit, switches the timeout off.
        outcome.settings[setting] = _ZERO.fullmatch(view.texts[value].strip().lower()) is None
    else:
        outcome.settings[setting] = view.word(value) != "DEFAULT"


def reset(ctx: Context) -> None:
    view = ctx.view
    ctx.outcome.mark("additive")
    i = ctx.start
    if view.word(i) == "ALL":
        for setting in TIMEOUT_SETTINGS:
            ctx.outcome.settings[setting] = False
    elif view.is_name(i) and view.name(i) in TIMEOUT_SETTINGS:
        ctx.outcome.settings[view.name(i)] = False


def transaction(ctx: Context) -> None:
    """BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION, ..."""
    view = ctx.view
    outcome = ctx.outcome
    outcome.mark("additive")
    kind = outcome.kind
    chained = view.contains(0, view.n, "AND", "CHAIN") != -1
    if kind == "BEGIN":
        outcome.transaction_control = "begin"
    elif kind in ("COMMIT", "PREPARE TRANSACTION") and not chained:
        outcome.transaction_control = "commit"
    elif kind == "ROLLBACK" and not chained:
        outcome.transaction_control = "rollback"
    elif kind in ("COMMIT PREPARED", "ROLLBACK PREPARED"):
        outcome.transactional = False
