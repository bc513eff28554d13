"""SELECT, INSERT, UPDATE, DELETE, MERGE and COPY, read from sqlglot's syntax tree."""

from __future__ import annotations

from sqlglot import exp

from lockstep.lint.checks.base import Context, bare

_ROOT_KINDS: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.Insert, "INSERT"),
    (exp.Update, "UPDATE"),
    (exp.Delete, "DELETE"),
    (exp.Merge, "MERGE"),
)


def _fold(identifier: exp.Expr | None) -> str | None:
    if not isinstance(identifier, exp.Identifier):
        return None
    name = str(identifier.this)
    return name if identifier.quoted else name.lower()


def table_name(node: exp.Expr | None) -> str | None:
    """The folded, qualified name of an exp.Table (or of the table inside an exp.Schema)."""
    if isinstance(node, exp.Schema):
        node = node.this
    if not isinstance(node, exp.Table):
        return None
    parts = [
        _fold(node.args.get(key))
        for key in ("catalog", "db", "this")
        if node.args.get(key) is not None
    ]
    if not parts or any(part is None for part in parts):
        return None
    return ".".join(part for part in parts if part is not None)


def _keyword_offset(ctx: Context, keyword: str) -> int:
    view = ctx.view
    for i, word in enumerate(view.words):
        if word == keyword:
            return view.offset(i)
    return ctx.statement_offset


def _identifier_offset(ctx: Context, node: exp.Expr) -> int:
    """File offset of the first identifier in `node` (sqlglot records token positions)."""
    for identifier in node.find_all(exp.Identifier):
        start = identifier.meta.get("start")
        if isinstance(start, int):
            return ctx.view.base + start
    return ctx.statement_offset


def _assigned_columns(update: exp.Expr) -> list[exp.Expr]:
    columns: list[exp.Expr] = []
    for assignment in update.args.get("expressions") or []:
        target = assignment.this if isinstance(assignment, exp.EQ) else None
        if isinstance(target, exp.Tuple):
            columns.extend(target.expressions)
        elif target is not None:
            columns.append(target)
    return columns


def _check_duplicates(ctx: Context, columns: list[exp.Expr], statement: str) -> None:
    seen: set[str] = set()
    for column in columns:
        identifier = column.this if isinstance(column, exp.Column) else column
        name = _fold(identifier)
        if name is None:
            continue
        if name in seen:
            ctx.outcome.hit(
                "ban-duplicate-column-assignments",
                _identifier_offset(ctx, column),
                f"Column {name} is assigned twice in one {statement}: PostgreSQL rejects "
                "the statement.",
            )
        seen.add(name)


def data_statement(ctx: Context) -> None:
    outcome = ctx.outcome
    tree = ctx.tree
    if tree is None:
        _from_tokens(ctx)
        return
    for node_type, kind in _ROOT_KINDS:
        if isinstance(tree, node_type):
            outcome.kind = kind
            break
    else:
        outcome.kind = "SELECT"
    changes = False
    for node in tree.find_all(exp.Update, exp.Delete, exp.Merge, exp.Insert):
        if not changes and outcome.kind == "SELECT":
            # WITH moved AS (DELETE ... RETURNING *) SELECT ...: the change is what matters.
            outcome.kind = next(
                kind for node_type, kind in _ROOT_KINDS if isinstance(node, node_type)
            )
        changes = True
        outcome.take_lock("ROW EXCLUSIVE")
        if isinstance(node, exp.Insert):
            _insert(ctx, node)
        elif isinstance(node, exp.Update):
            _update_or_delete(ctx, node, "UPDATE")
        elif isinstance(node, exp.Delete):
            _update_or_delete(ctx, node, "DELETE")
        elif isinstance(node, exp.Merge):
            _merge(ctx, node)
    if not changes:
        _select(ctx, tree)


def _select(ctx: Context, tree: exp.Expr) -> None:
    outcome = ctx.outcome
    named_queries = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for node in tree.find_all(exp.Table):
        name = table_name(node)
        if name is not None and name not in named_queries:
            outcome.add_table(name)
    locking = any(True for _ in tree.find_all(exp.Lock))
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


def _insert(ctx: Context, node: exp.Insert) -> None:
    outcome = ctx.outcome
    target = node.this
    name = table_name(target)
    if name is not None:
        outcome.add_table(name)
    if isinstance(target, exp.Schema):
        _check_duplicates(ctx, list(target.expressions), "INSERT")
    conflict = node.args.get("conflict")
    if isinstance(conflict, exp.OnConflict) and conflict.args.get("action") is not None:
        action = conflict.args["action"]
        if "UPDATE" in str(getattr(action, "this", action)).upper():
            outcome.mixed = True
    outcome.mark("additive")


def _update_or_delete(ctx: Context, node: exp.Expr, verb: str) -> None:
    outcome = ctx.outcome
    name = table_name(node.this)
    offset = _keyword_offset(ctx, verb)
    outcome.mixed = True
    if name is None:
        return
    outcome.add_table(name)
    if verb == "UPDATE":
        _check_duplicates(ctx, _assigned_columns(node), "UPDATE")
    if ctx.state.is_new_table(name):
        return
    outcome.data_changes.append((bare(name), offset, verb))
    if verb == "DELETE":
        outcome.mark("data-losing")
    if node.args.get("where") is None:
        outcome.hit(
            "backfill-without-batching",
            offset,
            f"{verb} on {name} without WHERE changes every row in one transaction, locking "
            "them all until it commits.",
        )
        # every row's old values are overwritten (or gone): not undone by a down migration
        outcome.mark("long-locking", "data-losing")


def _merge(ctx: Context, node: exp.Merge) -> None:
    outcome = ctx.outcome
    outcome.mixed = True
    name = table_name(node.this)
    if name is None:
        return
    outcome.add_table(name)
    if not ctx.state.is_new_table(name):
        outcome.data_changes.append((bare(name), _keyword_offset(ctx, "MERGE"), "MERGE"))


def _from_tokens(ctx: Context) -> None:
    """A data statement without a syntax tree (a form sqlglot lacks): read its target and
    WHERE from tokens."""
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
