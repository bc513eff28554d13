"""Which pending statements break the application version that is running now.

The running version was built against the schema at some version V. On a scratch copy at V,
each pending statement is run in turn and the catalog is read before and after it; what V had
and the statement takes away or changes incompatibly is a break, found in the catalog rather
than guessed from the SQL text: a dropped or renamed table, view or column, a type change
that is not binary-coercible, a column that became NOT NULL without a default (inserts that
leave it out fail), a new NOT NULL column without a default, removed enum values, and
privileges revoked from a role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lockstep.lint.model import StatementInfo
from lockstep.postgres import DatabaseError, connect

from .catalog import Catalog, introspect
from .diff import binary_coercible


@dataclass(frozen=True)
class Break:
    version: str
    line: int
    statement: str
    what: str
    phase: str
    """The migration's phase: a break in an expand migration runs while V is live."""

    @property
    def while_running(self) -> bool:
        return self.phase == "expand"


def breaks(before: Catalog, after: Catalog) -> list[str]:
    """What `after` takes away from, or changes incompatibly in, `before` (pure)."""
    found: list[str] = []
    for table in before.tables:
        new = after.table(table.name)
        if new is None:
            found.append(f"table {table.name} is gone (dropped or renamed)")
            continue
        for column in table.columns:
            now = new.column(column.name)
            if now is None:
                found.append(f"column {table.name}.{column.name} is gone (dropped or renamed)")
                continue
            if now.type != column.type and not binary_coercible(column.type, now.type):
                found.append(
                    f"column {table.name}.{column.name} changes type from {column.type} to "
                    f"{now.type}"
                )
            if now.not_null and not column.not_null and now.default is None:
                found.append(
                    f"column {table.name}.{column.name} becomes NOT NULL without a default: "
                    "inserts that leave it out, or write NULL, fail"
                )
        for column in new.columns:
            required = column.not_null and column.default is None and not column.identity
            if required and column.generated is None and table.column(column.name) is None:
                found.append(
                    f"new column {table.name}.{column.name} is NOT NULL without a default: "
                    "the running version's inserts fail"
                )
        lost = sorted(table.privileges - new.privileges)
        for grantee, privilege in lost:
            found.append(f"{grantee} loses {privilege} on {table.name}")
    views = {view.name: view for view in after.views}
    for view in before.views:
        now_view = views.get(view.name)
        if now_view is None:
            found.append(f"view {view.name} is gone")
            continue
        missing = [name for name, _ in view.columns if name not in dict(now_view.columns)]
        if missing:
            found.append(f"view {view.name} loses column(s) {', '.join(missing)}")
    enums = {enum.name: enum for enum in after.enums}
    for enum in before.enums:
        now_enum = enums.get(enum.name)
        if now_enum is None:
            found.append(f"type {enum.name} is gone")
            continue
        removed = [label for label in enum.labels if label not in now_enum.labels]
        if removed:
            found.append(f"type {enum.name} loses value(s) {', '.join(removed)}")
    return found


@dataclass
class CompatibilityReport:
    running_version: str | None
    breaks: list[Break]
    checked: int
    """How many pending statements were run on the scratch copy."""
    error: str | None = None
    """A statement failed on the copy: checking stopped there."""


def check(
    scratch_url: str,
    pending: Sequence[tuple[str, str, Sequence[StatementInfo]]],
    running_version: str | None,
) -> CompatibilityReport:
    """Run `pending` ((version, phase, statements)) on the scratch copy, which holds the
    schema of `running_version`, and report each statement's breaks."""
    report = CompatibilityReport(running_version, [], 0)
    seen: set[str] = set()
    with connect(scratch_url, application_name="lockstep:compat") as conn:
        before = introspect(conn)
        for version, phase, statements in pending:
            for statement in statements:
                try:
                    conn.execute_text(statement.text)
                except DatabaseError as error:
                    report.error = f"{version} line {statement.line}: {error}"
                    return report
                report.checked += 1
                if statement.kind in ("SELECT", "SET", "RESET", "COMMENT", "ANALYZE"):
                    continue  # cannot change the catalog in a way that breaks a reader
                after = introspect(conn)
                for what in breaks(before, after):
                    if what in seen:
                        continue
                    seen.add(what)
                    report.breaks.append(
                        Break(version, statement.line, statement.text, what, phase)
                    )
                # what a later statement breaks is measured against what V had
                before = _still_there(before, after)
    return report


def _still_there(before: Catalog, after: Catalog) -> Catalog:
    """Keep comparing against V's objects only, as they are now: an object the running
    version never saw (added by a pending statement) cannot be something it relies on."""
    import dataclasses

    names = {table.name for table in before.tables}
    tables = tuple(t for t in after.tables if t.name in names)
    kept = []
    for table in tables:
        old = before.table(table.name)
        assert old is not None
        columns = tuple(c for c in table.columns if old.column(c.name) is not None)
        kept.append(dataclasses.replace(table, columns=columns))
    view_names = {view.name for view in before.views}
    enum_names = {enum.name for enum in before.enums}
    return Catalog(
        version=after.version,
        schemas=after.schemas,
        extensions=after.extensions,
        enums=tuple(e for e in after.enums if e.name in enum_names),
        sequences=after.sequences,
        tables=tuple(kept),
        views=tuple(v for v in after.views if v.name in view_names),
    )
