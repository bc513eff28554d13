"""What reading one statement gives (tokens, kind, syntax problem, data facts), and a cache of
it on disk, so that a later `lockstep lint` of the same statements needs neither the lexer nor
the parser.

The cache is a file of plain values (marshal) under `$LOCKSTEP_CACHE_DIR`, else
`$XDG_CACHE_HOME/lockstep`, else `~/.cache/lockstep`; its name carries a fingerprint of the
lint's own code and of the parser (pgparse), so a change of either starts a new one. Entries
are keyed by a hash of the statement text. A cache that cannot be read or written is
ignored: it only ever saves time.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from pathlib import Path
from typing import Any

from lockstep import __version__
from lockstep.lint.datafacts import DataFacts
from lockstep.lint.record import FrozenRecord
from lockstep.lint.tokens import TokenList

MAX_ENTRIES = 200_000


class SyntaxProblem(FrozenRecord):
    """Why PostgreSQL's parser rejected a statement, and where (an offset in the statement)."""

    __slots__ = ("message", "offset")

    message: str
    offset: int

    def __init__(
        self,
        message: str,
        offset: int = 0,
    ) -> None:
        self.message = message
        self.offset = offset


class StatementRead(FrozenRecord):
    """What tokenizing, classifying and parsing one statement's text gave.

    `problem` is set when PostgreSQL's parser rejected it. `data` holds what the data checks
    need of a SELECT/INSERT/UPDATE/DELETE/MERGE's parse tree.
    """

    __slots__ = ("data", "kind", "problem", "start", "tokens")

    tokens: TokenList
    kind: str
    start: int
    problem: SyntaxProblem | None
    data: DataFacts | None

    def __init__(
        self,
        tokens: TokenList,
        kind: str,
        start: int,
        problem: SyntaxProblem | None,
        data: DataFacts | None,
    ) -> None:
        self.tokens = tokens
        self.kind = kind
        self.start = start
        self.problem = problem
        self.data = data


def pack(read: StatementRead) -> tuple[Any, ...]:
    tokens = read.tokens
    return (
        (
            tokens.words,
            tokens.texts,
            tokens.kinds,
            tokens.starts,
            tokens.ends,
            tokens.depth,
            tokens.closers,
            tokens.longest,
        ),
        read.kind,
        read.start,
        None if read.problem is None else (read.problem.message, read.problem.offset),
        None if read.data is None else read.data.pack(),
    )


def unpack(packed: tuple[Any, ...]) -> StatementRead:
    tokens, kind, start, problem, data = packed
    return StatementRead(
        TokenList(*tokens),
        kind,
        start,
        None if problem is None else SyntaxProblem(*problem),
        None if data is None else DataFacts.unpack(data),
    )


def _fingerprint() -> str:
    """Changes when the lint's code or the parser changes (file sizes and times, not
    contents: a stat per file is all a cold start can afford)."""
    parts = [__version__]
    lint_dir = Path(__file__).parent
    for path in sorted([*lint_dir.glob("*.py"), *lint_dir.glob("checks/*.py")]):
        stat = path.stat()
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    import importlib.util

    spec = importlib.util.find_spec("pgparse")
    if spec is not None and spec.origin:
        with contextlib.suppress(OSError):
            stat = Path(spec.origin).stat()
            parts.append(f"pgparse:{stat.st_size}:{stat.st_mtime_ns}")
    import hashlib  # here: a first run without the cache does without OpenSSL's start

    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cache_directory() -> Path:
    explicit = os.environ.get("LOCKSTEP_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lockstep"


def _key(text: str) -> bytes:
    import hashlib

    return hashlib.blake2b(text.encode(), digest_size=16).digest()


class DiskCache:
    """Statement reads kept between runs (see the module's docstring)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"lint-statements-{_fingerprint()}.bin"
        self.entries: dict[bytes, tuple[Any, ...]] = {}
        self.added = 0
        with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
            # the file is this user's own cache, written by save() below
            loaded = marshal.loads(self.path.read_bytes())  # noqa: S302
            if isinstance(loaded, dict):
                self.entries = loaded

    def get(self, text: str) -> StatementRead | None:
        packed = self.entries.get(_key(text))
        if packed is None:
            return None
        try:
            return unpack(packed)
        except (TypeError, ValueError):
            return None

    def put(self, text: str, read: StatementRead) -> None:
        self.entries[_key(text)] = pack(read)
        self.added += 1

    def save(self) -> None:
        """Write the cache if this run added to it (atomically; errors are ignored)."""
        if not self.added:
            return
        if len(self.entries) > MAX_ENTRIES:
            self.entries = dict(list(self.entries.items())[-MAX_ENTRIES:])
        import tempfile

        with contextlib.suppress(OSError, ValueError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path.parent, delete=False) as handle:
                handle.write(marshal.dumps(self.entries))
            os.replace(handle.name, self.path)
            self.added = 0


class _Active:
    """The disk cache in use: the `lockstep lint` command turns it on; the library does not
    (the operator keeps its in-memory cache only)."""

    disk: DiskCache | None = None


ACTIVE = _Active()


def use_disk_cache(directory: Path | None) -> DiskCache | None:
    ACTIVE.disk = DiskCache(directory) if directory is not None else None
    return ACTIVE.disk
