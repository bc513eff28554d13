"""`lockstep diff` end to end: desired SQL -> scratch database -> catalogs -> migrations.

The desired schema is loaded into a scratch database (on the target's server, or on a dev
server) so that PostgreSQL itself normalises it; the target is only read, in one read-only
transaction. With --rename hints the renames are applied to a scratch copy of the target first,
so that the diff compares against what the target will look like after them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lockstep.postgres import Connection, DatabaseError, connect

from . import scratch
from .catalog import Catalog, introspect
from .diff import DiffError, DiffResult, GeneratedMigration, Rename, diff


@dataclass(frozen=True)
class RenameHint:
    """`--rename table.old=new` (a column) or `--rename old=new` / `schema.old=new` (a table),
    as typed."""

    path: tuple[str, ...]
    new_name: str


_HINT = re.compile(r"^(?P<path>[^=]+)=(?P<new>[^=.]+)$")


def parse_rename(text: str) -> RenameHint:
    match = _HINT.match(text.strip())
    if match is None:
        raise DiffError(
            f"--rename {text!r}: write table.old_column=new_column, or old_table=new_table "
            "(schema.old_table=new_table)"
        )
    path = tuple(part for part in match["path"].split("."))
    if not 1 <= len(path) <= 3 or not all(path):
        raise DiffError(f"--rename {text!r}: the old name has 1 to 3 dotted parts")
    return RenameHint(path, match["new"])


def resolve_renames(
    conn: Connection, hints: Sequence[RenameHint], current: Catalog
) -> list[Rename]:
    """Turn hints into renames of objects that exist, with names quoted by the server."""

    def quote(name: str) -> str:
        return str(conn.fetch_value("SELECT quote_ident(%s)", (name,)))

    renames: list[Rename] = []
    for hint in hints:
        path = [quote(part) for part in hint.path]
        candidates: list[Rename] = []
        if len(path) == 3:
            candidates.append(Rename(f"{path[0]}.{path[1]}", path[2], quote(hint.new_name)))
        elif len(path) == 2:
            candidates.append(Rename(f"public.{path[0]}", path[1], quote(hint.new_name)))
            candidates.append(Rename(f"{path[0]}.{path[1]}", None, quote(hint.new_name)))
        else:
            candidates.append(Rename(f"public.{path[0]}", None, quote(hint.new_name)))
        found = next((r for r in candidates if _exists(current, r)), None)
        if found is None:
            raise DiffError(
                f"--rename {'.'.join(hint.path)}={hint.new_name}: no such table or column in "
                "the target database"
            )
        renames.append(found)
    return renames


def _exists(catalog: Catalog, rename: Rename) -> bool:
    table = catalog.table(rename.table)
    if table is None:
        return False
    return rename.column is None or table.column(rename.column) is not None


def desired_catalog(
    server_url: str, files: Sequence[Path], current: Catalog | None = None
) -> tuple[Catalog, set[tuple[str, str]]]:
    """Load the desired SQL into a scratch database and read it back; with `current`, also
    the column type changes that have a direct cast (`USING c::new` works for them)."""
    with (
        scratch.scratch_database(server_url, purpose="desired") as url,
        connect(url, application_name="lockstep:diff") as conn,
    ):
        scratch.load_files(conn, files)
        desired = introspect(conn)
        casts = _direct_casts(conn, _type_changes(current, desired)) if current else set()
        return desired, casts


def _type_changes(current: Catalog, desired: Catalog) -> set[tuple[str, str]]:
    changes: set[tuple[str, str]] = set()
    for table in desired.tables:
        old = current.table(table.name)
        for column in table.columns if old is not None else ():
            previous = old.column(column.name) if old is not None else None
            if previous is not None and previous.type != column.type:
                changes.add((previous.type, column.type))
    return changes


def _direct_casts(conn: Connection, pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """The pairs whose cast `NULL::old::new` PostgreSQL accepts (types named by format_type)."""
    found: set[tuple[str, str]] = set()
    for old, new in pairs:
        try:
            with conn.transaction():
                conn.execute_text(f"SELECT NULL::{old}::{new}")
            found.add((old, new))
        except DatabaseError:
            continue
    return found


def generate(
    target_url: str,
    desired_files: Sequence[Path],
    *,
    allow: Sequence[str] = (),
    renames: Sequence[RenameHint] = (),
    server_url: str | None = None,
) -> DiffResult:
    """The migrations that take the target to the desired schema (see diff.diff)."""
    with connect(target_url, application_name="lockstep:diff") as conn:
        current = introspect(conn)
        resolved = resolve_renames(conn, renames, current) if renames else []
    if resolved:
        with (
            scratch.scratch_copy(target_url, server_url=server_url, purpose="renamed") as url,
            connect(url, application_name="lockstep:diff") as conn,
        ):
            for rename in resolved:
                conn.execute_text(rename.up)
            current = introspect(conn)
    desired, casts = desired_catalog(server_url or target_url, desired_files, current)
    return diff(current, desired, allow=allow, renames=resolved, casts=casts)


# -------------------------------------------------------------------------------- layouts


def versions(count: int, start: datetime | None = None) -> list[str]:
    """`count` versions, one second apart, as UTC timestamps (yyyymmddHHMMSS)."""
    base = (start or datetime.now(UTC)).replace(microsecond=0)
    return [(base + timedelta(seconds=i)).strftime("%Y%m%d%H%M%S") for i in range(count)]


def file_names(
    migrations: Sequence[GeneratedMigration], name: str, start: datetime | None = None
) -> list[tuple[str, str, str | None]]:
    """(stem, up SQL, down SQL) per migration: `<version>_<name>_<group>`."""
    return [
        (f"{version}_{name}_{migration.name}", migration.up, migration.down)
        for version, migration in zip(versions(len(migrations), start), migrations, strict=True)
    ]


def write_directory(directory: Path, files: Sequence[tuple[str, str, str | None]]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for stem, up, down in files:
        for suffix, text in ((".up.sql", up), (".down.sql", down)):
            if text is None:
                continue
            path = directory / f"{stem}{suffix}"
            if path.exists():
                raise DiffError(f"{path} already exists")
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def configmap_yaml(name: str, files: Sequence[tuple[str, str, str | None]]) -> str:
    """A ConfigMap whose keys lockstep reads as migrations (`<stem>.up.sql`, `.down.sql`)."""
    import yaml

    data: dict[str, str] = {}
    for stem, up, down in files:
        data[f"{stem}.up.sql"] = up
        if down is not None:
            data[f"{stem}.down.sql"] = down
    document = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    return str(yaml.safe_dump(document, sort_keys=False, default_style=None, width=1000))


def describe(result: DiffResult) -> list[str]:
    """One line per generated migration, for people."""
    lines = []
    for migration in result.migrations:
        count = sum(1 for line in migration.up.splitlines() if line.rstrip().endswith(";"))
        how = "one transaction" if migration.transactional else "outside a transaction"
        lines.append(f"{migration.name}: {migration.phase}, {count} statement(s), {how}")
    return lines
