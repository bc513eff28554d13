"""Split a migration file into statements, keeping positions and comments.

PostgreSQL's lexical rules decide where a statement ends: a `;` inside a string ('...',
E'...'), a quoted identifier, a dollar-quoted body ($$...$$, $tag$...$tag$), a comment
(-- or nested /* */) or an SQL-standard function body (BEGIN ATOMIC ... END) does not end it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

from lockstep.lint.record import FrozenRecord

# The characters that can start a comment, a quoted token or a statement end. E'...' strings
# and dollar quotes are told apart after a match (a plain character class scans fastest).
_INTERESTING = re.compile(r"--|/\*|['\";$]")
# BEGIN ATOMIC bodies are rare: words are only tracked in files that mention ATOMIC.
_INTERESTING_WITH_WORDS = re.compile(
    r"--|/\*|['\";$]|(?<![\w$])(?:[bB][eE][gG][iI][nN]|[cC][aA][sS][eE]|[eE][nN][dD])(?![\w$])"
)
_ATOMIC = re.compile(r"(?<![\w$])atomic(?![\w$])", re.IGNORECASE)
_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_BLOCK_EDGE = re.compile(r"/\*|\*/")
_ESCAPE_STRING_STOP = re.compile(r"[\\']")
_ATOMIC_AFTER_BEGIN = re.compile(r"\s+atomic(?![\w$])", re.IGNORECASE)
_NON_SPACE = re.compile(r"[^\s\ufeff]")  # a byte-order mark is not part of a statement


class Comment(FrozenRecord):
    """A comment: its offsets in the file and its text without the comment markers."""

    __slots__ = ("body", "end", "start")

    start: int
    end: int
    body: str

    def __init__(
        self,
        start: int,
        end: int,
        body: str,
    ) -> None:
        self.start = start
        self.end = end
        self.body = body


class RawStatement(FrozenRecord):
    """One statement as it appears in the file (without its `;`).

    `problem` is set when the statement runs into the end of the file inside a string,
    quoted identifier, dollar-quoted body or comment: (offset where it opened, description).
    """

    __slots__ = ("index", "problem", "start", "text")

    index: int
    start: int
    text: str
    problem: tuple[int, str] | None

    def __init__(
        self,
        index: int,
        start: int,
        text: str,
        problem: tuple[int, str] | None,
    ) -> None:
        self.index = index
        self.start = start
        self.text = text
        self.problem = problem


class SplitFile(FrozenRecord):
    __slots__ = ("comments", "statements")

    statements: list[RawStatement]
    comments: list[Comment]

    def __init__(
        self,
        statements: list[RawStatement],
        comments: list[Comment],
    ) -> None:
        self.statements = statements
        self.comments = comments


class LineIndex:
    """Turns character offsets into 1-based (line, column) pairs."""

    __slots__ = ("_starts",)

    def __init__(self, text: str) -> None:
        # each line's start: the running sum of the lengths of the lines before it, each with
        # its "\n" (built-in functions only: no Python code runs per line)
        lengths = map((1).__add__, map(len, text.split("\n")))
        self._starts = list(accumulate(lengths, initial=0))[:-1]

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


class _Splitter:
    """One pass over the text; a regex jumps between the characters that matter."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.statements: list[RawStatement] = []
        self.comments: list[Comment] = []
        self.start: int | None = None
        self.problem: tuple[int, str] | None = None
        self.atomic_depth = 0

    def mark_start(self, begin: int, end: int) -> None:
        """Note the statement start if [begin, end) holds its first significant character."""
        if self.start is None:
            found = _NON_SPACE.search(self.text, begin, end)
            if found is not None:
                self.start = found.start()

    def finish(self, end: int) -> None:
        if self.start is not None:
            body = self.text[self.start : end].rstrip()
            if body:
                self.statements.append(
                    RawStatement(len(self.statements), self.start, body, self.problem)
                )
        self.start = None
        self.problem = None
        self.atomic_depth = 0

    def unterminated(self, opened: int, what: str) -> int:
        self.problem = (opened, f"unterminated {what}")
        return len(self.text)

    def skip_block_comment(self, opened: int) -> int:
        depth = 1
        position = opened + 2
        while depth:
            edge = _BLOCK_EDGE.search(self.text, position)
            if edge is None:
                if self.start is None:
                    self.start = opened
                return self.unterminated(opened, "block comment")
            depth += 1 if edge.group() == "/*" else -1
            position = edge.end()
        self.comments.append(Comment(opened, position, self.text[opened + 2 : position - 2]))
        return position

    def skip_doubled(self, opened: int, quote: str, what: str) -> int:
        """Skip a body closed by `quote`, where a doubled quote stands for itself."""
        text = self.text
        position = opened + 1
        while True:
            close = text.find(quote, position)
            if close < 0:
                return self.unterminated(opened, what)
            if not text.startswith(quote, close + 1):
                return close + 1
            position = close + 2

    def skip_escape_string(self, opened: int) -> int:
        """Skip an E'...' body, where a backslash escapes the next character."""
        position = opened + 2
        while True:
            stop = _ESCAPE_STRING_STOP.search(self.text, position)
            if stop is None:
                return self.unterminated(opened, "quoted string")
            if stop.group() == "\\" or self.text.startswith("'", stop.end()):
                # a backslash escape, or a doubled quote
                position = stop.end() + 1
            else:
                return stop.end()

    def run(self) -> SplitFile:
        text = self.text
        interesting = _INTERESTING_WITH_WORDS if _ATOMIC.search(text) else _INTERESTING
        position = 0
        while True:
            match = interesting.search(text, position)
            if match is None:
                self.mark_start(position, len(text))
                self.finish(len(text))
                break
            found = match.group()
            begin = match.start()
            if found == "$" and _continues_name(text, begin):
                position = begin + 1  # a $ inside a name like a$b
                continue
            self.mark_start(position, begin)
            if found == "--":
                newline = text.find("\n", begin)
                end = len(text) if newline < 0 else newline
                self.comments.append(Comment(begin, end, text[begin + 2 : end]))
                position = end
            elif found == "/*":
                position = self.skip_block_comment(begin)
            elif found == ";":
                if not self.atomic_depth:
                    self.finish(begin)
                position = begin + 1
            elif found == "'":
                if begin and text[begin - 1] in "eE" and not _continues_name(text, begin - 1):
                    self.mark_start(begin - 1, begin)
                    position = self.skip_escape_string(begin - 1)
                else:
                    self.mark_start(begin, begin + 1)
                    position = self.skip_doubled(begin, "'", "quoted string")
            elif found == '"':
                self.mark_start(begin, begin + 1)
                position = self.skip_doubled(begin, '"', "quoted identifier")
            elif found == "$":
                tag = _DOLLAR_TAG.match(text, begin)
                if tag is None:
                    position = begin + 1
                    continue
                self.mark_start(begin, begin + 1)
                close = text.find(tag.group(), tag.end())
                if close < 0:
                    position = self.unterminated(begin, "dollar-quoted string")
                else:
                    position = close + len(tag.group())
            else:
                self.mark_start(begin, match.end())
                position = self.track_atomic_body(found.upper(), match.end())
        return SplitFile(self.statements, self.comments)

    def track_atomic_body(self, word: str, after: int) -> int:
        """Count BEGIN ATOMIC ... END nesting (CASE ... END nests inside it)."""
        if word == "BEGIN":
            atomic = _ATOMIC_AFTER_BEGIN.match(self.text, after)
            if atomic is not None:
                self.atomic_depth += 1
                return atomic.end()
        elif self.atomic_depth:
            self.atomic_depth += 1 if word == "CASE" else -1
        return after


def _continues_name(text: str, index: int) -> bool:
    """Whether the character before `index` belongs to a name (so text[index] does too)."""
    if index == 0:
        return False
    before = text[index - 1]
    return before.isalnum() or before in "_$"


def split_statements(text: str) -> SplitFile:
    """The statements and comments of `text`, in file order."""
    return _Splitter(text).run()
