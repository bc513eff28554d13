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
from dataclasses import dataclass, field

from lockstep.lint.rules import resolve_rule_ids
from lockstep.lint.split import Comment, RawStatement

_IGNORE = re.compile(
    r"^\s*(?:lockstep|squawk)-ignore(?P<file>-file)?(?=[\s:,]|$)[\s:]*(?P<rules>.*)$",
    re.IGNORECASE | re.DOTALL,
)
_PHASE = re.compile(r"^\s*lockstep:phase\s*=\s*(?P<phase>expand|contract)\b", re.IGNORECASE)
_RULE_SEPARATORS = re.compile(r"[\s,]+")


@dataclass
class Ignore:
    """One ignore comment; `rules` is None when it covers every rule."""

    offset: int
    rules: frozenset[str] | None
    unknown: tuple[str, ...]
    file_level: bool
    statement: int | None
    """Index of the statement it covers (None: file-level, or no statement follows)."""
    used: set[str] = field(default_factory=set)

    def covers(self, rule: str) -> bool:
        return self.rules is None or rule in self.rules


@dataclass
class Directives:
    ignores: list[Ignore]
    phase: str | None
    phase_offset: int
    file_level: list[Ignore] = field(default_factory=list)
    by_statement: dict[int, list[Ignore]] = field(default_factory=dict)

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
