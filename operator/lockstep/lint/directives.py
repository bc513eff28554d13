"""Comments that steer the lint: ignores and the phase override.

    -- lockstep-ignore: rule-a, rule-b      the next statement (or the one it is inside)
    -- squawk-ignore rule-a,rule-b          the same, squawk's spelling
    -- lockstep-ignore-file: rule-a         the whole file (squawk-ignore-file too)
    -- lockstep:phase=expand | contract     the file's phase

An ignore without rule ids covers every rule. Text after a second `--` is a free-form reason.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from lockstep.lint.record import Record
from lockstep.lint.rules import resolve_rule_ids
from lockstep.lint.split import Comment, RawStatement

_IGNORE = re.compile(
    r"^\s*(?:lockstep|squawk)-ignore(?P<file>-file)?(?=[\s:,]|$)[\s:]*(?P<rules>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_PHASE = re.compile(r"^\s*lockstep:phase\s*=\s*(?P<phase>expand|contract)\b", re.IGNORECASE)
_RULE_SEPARATORS = re.compile(r"[\s,]+")


class Ignore(Record):
    """One ignore comment; `rules` is None when it covers every rule."""

    __slots__ = ("file_level", "offset", "rules", "statement", "unknown", "used")

    offset: int
    rules: frozenset[str] | None
    unknown: tuple[str, ...]
    file_level: bool
    statement: int | None
    """Index of the statement it covers (None: file-level, or no statement follows)."""
    used: set[str]

    def __init__(
        self,
        offset: int,
        rules: frozenset[str] | None,
        unknown: tuple[str, ...],
        file_level: bool,
        statement: int | None,
        used: set[str] | None = None,
    ) -> None:
        self.offset = offset
        self.rules = rules
        self.unknown = unknown
        self.file_level = file_level
        self.statement = statement
        self.used = set() if used is None else used

    def covers(self, rule: str) -> bool:
        return self.rules is None or rule in self.rules


class Directives(Record):
    __slots__ = ("by_statement", "file_level", "ignores", "phase", "phase_offset")

    ignores: list[Ignore]
    phase: str | None
    phase_offset: int
    file_level: list[Ignore]
    by_statement: dict[int, list[Ignore]]

    def __init__(
        self,
        ignores: list[Ignore],
        phase: str | None,
        phase_offset: int,
        file_level: list[Ignore] | None = None,
        by_statement: dict[int, list[Ignore]] | None = None,
    ) -> None:
        self.ignores = ignores
        self.phase = phase
        self.phase_offset = phase_offset
        self.file_level = [] if file_level is None else file_level
        self.by_statement = {} if by_statement is None else by_statement
        self.__post_init__()

    def __post_init__(self) -> None:
        for ignore in self.ignores:
            if ignore.file_level:
                self.file_level.append(ignore)
            elif ignore.statement is not None:
                self.by_statement.setdefault(ignore.statement, []).append(ignore)

    def for_statement(self, index: int) -> list[Ignore]:
        """The ignores that cover statement `index`: its own, then the file-level ones."""
        return self.by_statement.get(index, []) + self.file_level


def read_directives(comments: list[Comment], statements: list[RawStatement]) -> Directives:
    starts = [statement.start for statement in statements]
    ends = [statement.start + len(statement.text) for statement in statements]
    ignores: list[Ignore] = []
    phase: str | None = None
    phase_offset = 0
    for comment in comments:
        body = comment.body
        phase_match = _PHASE.match(body)
        if phase_match is not None:
            phase = phase_match.group("phase").lower()
            phase_offset = comment.start
            continue
        match = _IGNORE.match(body)
        if match is None:
            continue
        listed = match.group("rules").split("--", 1)[0]
        ids = {rule_id.lower() for rule_id in _RULE_SEPARATORS.split(listed.strip()) if rule_id}
        known, unknown = resolve_rule_ids(ids)
        file_level = match.group("file") is not None
        following = bisect_right(starts, comment.start)
        if following and comment.start < ends[following - 1]:
            following -= 1  # a comment inside a statement covers that statement
        statement = None if file_level or following >= len(statements) else following
        ignores.append(
            Ignore(
                offset=comment.start,
                rules=known if ids else None,
                unknown=unknown,
                file_level=file_level,
                statement=statement,
            )
        )
    return Directives(ignores, phase, phase_offset)
