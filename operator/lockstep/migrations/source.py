"""Versioned migrations and the layouts they are read from.

Three layouts, one model:
- inline, in the DatabaseMigration spec (`source.migrations`);
- a ConfigMap, keys `<version>_<name>.up.sql` / `.down.sql`, or the Prisma layout flattened
  to `<version>_<name>__migration.sql` (+ `__down.sql`) because keys cannot hold a slash;
- a directory of `<version>_<name>.up.sql` / `.down.sql` files, or Prisma folders
  `<version>_<name>/migration.sql` with an optional `down.sql` beside it. A mounted ConfigMap
  is such a directory, so the flattened Prisma names are accepted there too.

Versions sort lexically, so timestamps (20260101120000) or zero-padded numbers are expected.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the models pull in pydantic, which `lockstep lint` does without
    from lockstep.api.migration import InlineMigration, MigrationPhase

Direction = Literal["up", "down"]

NAME_PATTERN = r"^[0-9A-Za-z_.-]+$"
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]*$"
"""The same pattern as the API model's (a unit test keeps them equal)."""
MAX_VERSION_LENGTH = 64
MAX_NAME_LENGTH = 128

# `<version>_<name>`: the version is everything before the first underscore
_STEM = re.compile(r"^(?P<version>[0-9A-Za-z][0-9A-Za-z.-]*)_(?P<name>[0-9A-Za-z_.-]+)$")
_FLAT_SUFFIXES: tuple[tuple[str, Direction], ...] = (
    (".up.sql", "up"),
    (".down.sql", "down"),
    ("__migration.sql", "up"),
    ("__down.sql", "down"),
)
_PRISMA_FILES: dict[str, Direction] = {"migration.sql": "up", "down.sql": "down"}
_PHASE_DIRECTIVE = re.compile(r"^[ \t]*--[ \t]*lockstep:phase[ \t]*=[ \t]*(\S*)[ \t]*$", re.M)


class SourceError(ValueError):
    """The migration source is malformed; the message names the file or key at fault."""


@dataclass(frozen=True)
class Migration:
    """One versioned migration: the SQL to apply it and, optionally, to revert it."""

    version: str
    name: str
    up: str
    down: str | None = None
    declared_phase: MigrationPhase | None = None
    origin: str = ""
    """Where the up SQL was read from (a file, a ConfigMap key, an inline entry)."""
    down_origin: str = ""
    """Where the down SQL was read from."""
    recorded_checksum: str | None = None
    """For a migration known only from the ledger (declarative mode keeps no file of it):
    the checksum recorded there stands in for its SQL."""

    @property
    def checksum(self) -> str:
        """sha256 of the up SQL, hex: what the ledger compares to detect an edited migration."""
        return self.recorded_checksum or sha256_hex(self.up)

    @property
    def label(self) -> str:
        """`<version> (<name>)`, the way messages name a migration."""
        return f"{self.version} ({self.name})"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def source_hash(migrations: Iterable[Migration]) -> str:
    """One hash of the whole source: changes when any migration (up, down or phase) changes."""
    summary = [
        [
            m.version,
            m.name,
            m.checksum,
            None if m.down is None else sha256_hex(m.down),
            m.declared_phase,
        ]
        for m in sorted(migrations, key=lambda m: m.version)
    ]
    return sha256_hex(json.dumps(summary, separators=(",", ":")))


# ------------------------------------------------------------------------------------ loaders


def from_inline(entries: Sequence[InlineMigration]) -> list[Migration]:
    """Migrations written in the spec (already validated by the API model)."""
    found: dict[str, Migration] = {}
    for entry in entries:
        origin = f"inline migration {entry.version}_{entry.name}"
        if entry.version in found:
            raise SourceError(
                f"{origin}: version {entry.version} is also used by "
                f"{found[entry.version].origin}; each version must be unique"
            )
        directive = declared_phase(entry.up, origin)
        if entry.phase and directive and entry.phase != directive:
            raise SourceError(
                f"{origin}: phase is {entry.phase!r} but its SQL says "
                f"-- lockstep:phase={directive}; keep one"
            )
        found[entry.version] = Migration(
            version=entry.version,
            name=entry.name,
            up=entry.up,
            down=entry.down,
            declared_phase=entry.phase or directive,
            origin=origin,
            down_origin=f"{origin} (down)" if entry.down is not None else "",
        )
    return sorted(found.values(), key=lambda m: m.version)


def from_configmap(data: Mapping[str, str]) -> list[Migration]:
    """Migrations from a ConfigMap's data; keys that do not end in .sql are ignored."""
    parts = _Parts()
    for key in sorted(data):
        if not key.endswith(".sql"):
            continue
        origin = f"ConfigMap key {key}"
        parsed = _parse_flat(key)
        if parsed is None:
            raise SourceError(
                f"{origin}: not a migration name; use <version>_<name>.up.sql, "
                "<version>_<name>.down.sql or <version>_<name>__migration.sql"
            )
        version, name, direction = parsed
        parts.add(version, name, direction, data[key], origin)
    return parts.migrations()


def from_directory(path: Path) -> list[Migration]:
    """Migrations from a directory: flat `.up.sql`/`.down.sql` files or Prisma folders."""
    if not path.is_dir():
        raise SourceError(f"{path}: not a directory")
    parts = _Parts()
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue  # hidden files, and the ..data links of a mounted ConfigMap
        if entry.is_dir():
            _read_prisma_folder(entry, parts)
            continue
        if not entry.name.endswith(".sql"):
            continue
        parsed = _parse_flat(entry.name)
        if parsed is None:
            raise SourceError(
                f"{entry}: not a migration file name; use <version>_<name>.up.sql and "
                "<version>_<name>.down.sql, or <version>_<name>/migration.sql"
            )
        version, name, direction = parsed
        parts.add(version, name, direction, _read(entry), str(entry))
    return parts.migrations()


def declared_phase(text: str, origin: str) -> MigrationPhase | None:
    """The phase set by a `-- lockstep:phase=expand|contract` line, if any."""
    values = {match.group(1) for match in _PHASE_DIRECTIVE.finditer(text)}
    if not values:
        return None
    if len(values) > 1:
        raise SourceError(f"{origin}: conflicting -- lockstep:phase lines: {sorted(values)}")
    value = values.pop()
    if value == "expand":
        return "expand"
    if value == "contract":
        return "contract"
    raise SourceError(f"{origin}: -- lockstep:phase={value} is not a phase; use expand or contract")


NEW_NAME_RULE = (
    "letters, digits, '_' and '-', starting with a letter or digit, at most "
    f"{MAX_NAME_LENGTH} characters"
)
"""What `lockstep new` accepts as a migration name (docs/cli.md states the same words)."""
_NEW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_new_name(name: str) -> str | None:
    """Why `lockstep new` refuses `name`, or None when it accepts it.

    Stricter than what the loaders read (they accept '.' too, and leading '_' or '-'): a new
    name never looks like an option, a suffix (`x.up`) or a hidden file.
    """
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH or not _NEW_NAME.fullmatch(name):
        return f"use {NEW_NAME_RULE}"
    return None


def check_name(name: str) -> str | None:
    """Why `name` cannot be a migration name, or None when it can."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name is longer than {MAX_NAME_LENGTH} characters"
    if not re.fullmatch(NAME_PATTERN, name):
        return "use only letters, digits, '_', '-' and '.'"
    return None


# ----------------------------------------------------------------------------------- helpers


def _parse_flat(filename: str) -> tuple[str, str, Direction] | None:
    for suffix, direction in _FLAT_SUFFIXES:
        if filename.endswith(suffix):
            return _parse_stem(filename[: -len(suffix)], filename, direction)
    return None


def _parse_stem(stem: str, origin: str, direction: Direction) -> tuple[str, str, Direction]:
    match = _STEM.match(stem)
    if match is None:
        raise SourceError(
            f"{origin}: {stem!r} is not <version>_<name> (the version is the part before the "
            "first '_': letters, digits, '.' and '-'; the name: letters, digits, '_', '.', '-')"
        )
    version, name = match.group("version"), match.group("name")
    if not re.fullmatch(VERSION_PATTERN, version) or len(version) > MAX_VERSION_LENGTH:
        raise SourceError(f"{origin}: version {version!r} is not valid")
    problem = check_name(name)
    if problem:
        raise SourceError(f"{origin}: name {name!r} is not valid: {problem}")
    return version, name, direction


def _read_prisma_folder(folder: Path, parts: _Parts) -> None:
    sql_files = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    if not sql_files:
        return  # not a migration folder (docs, fixtures, ...)
    for file in sql_files:
        direction = _PRISMA_FILES.get(file.name)
        if direction is None:
            raise SourceError(
                f"{file}: unexpected SQL file in a migration folder; only migration.sql and "
                "down.sql belong there"
            )
        version, name, _ = _parse_stem(folder.name, str(file), direction)
        parts.add(version, name, direction, _read(file), str(file))


def _read(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return text.removeprefix("\ufeff")


@dataclass
class _Half:
    name: str
    text: str
    origin: str


class _Parts:
    """Up and down halves collected from files or keys, checked and paired by version."""

    def __init__(self) -> None:
        self.up: dict[str, _Half] = {}
        self.down: dict[str, _Half] = {}

    def add(self, version: str, name: str, direction: Direction, text: str, origin: str) -> None:
        halves = self.up if direction == "up" else self.down
        if version in halves:
            raise SourceError(
                f"{origin}: version {version} is also used by {halves[version].origin}; "
                "each version must be unique"
            )
        if not text.strip():
            raise SourceError(f"{origin}: the file is empty")
        halves[version] = _Half(name, text, origin)

    def migrations(self) -> list[Migration]:
        result: list[Migration] = []
        for version, reverting in self.down.items():
            applying = self.up.get(version)
            if applying is None:
                raise SourceError(f"{reverting.origin}: a down migration without its up migration")
            if applying.name != reverting.name:
                raise SourceError(
                    f"{reverting.origin}: the name {reverting.name!r} differs from "
                    f"{applying.origin} ({applying.name!r})"
                )
        for version, up in sorted(self.up.items()):
            down = self.down.get(version)
            result.append(
                Migration(
                    version=version,
                    name=up.name,
                    up=up.text,
                    down=down.text if down else None,
                    declared_phase=declared_phase(up.text, up.origin),
                    origin=up.origin,
                    down_origin=down.origin if down else "",
                )
            )
        return result
