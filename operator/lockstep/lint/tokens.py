"""A flat view of one statement's tokens (lint/lexer.py), for the checks that read statement
structure.

Statement structure (which ALTER TABLE action, which flags, which names) is read from tokens
for every statement; PostgreSQL's parser (lint/parse.py) says whether the statement is valid
and gives the data checks their facts. Reading tokens keeps a statement's findings the same
when a reviewer lets a statement the parser rejects through.
"""

from __future__ import annotations

from lockstep.lint.record import FrozenRecord

WORD = 0
QUOTED = 1
STRING = 2
NUMBER = 3
SYMBOL = 4

OPEN = frozenset({"(", "["})
CLOSE = frozenset({")", "]"})


class TokenList(FrozenRecord):
    """A statement's tokens as flat tuples of plain values, offsets relative to the statement.

    `words[i]` is the upper-cased text of a keyword or unquoted name, the symbol itself for
    punctuation and operators, and "" for strings, numbers and quoted identifiers (so keyword
    matching never matches them); a string's and a quoted identifier's text is its content.
    Multi-word keywords ("PRIMARY KEY", "DOUBLE PRECISION") are one entry per word. `depth[i]`
    is the bracket depth before token i. Plain values keep cached statements cheap for the
    garbage collector.
    """

    __slots__ = ("closers", "depth", "ends", "kinds", "longest", "starts", "texts", "words")

    words: tuple[str, ...]
    texts: tuple[str, ...]
    kinds: tuple[int, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    depth: tuple[int, ...]
    closers: dict[int, int]
    """Index of an opening bracket -> index of the bracket that closes it."""
    longest: int
    """Length of the longest token text."""

    def __init__(
        self,
        words: tuple[str, ...],
        texts: tuple[str, ...],
        kinds: tuple[int, ...],
        starts: tuple[int, ...],
        ends: tuple[int, ...],
        depth: tuple[int, ...],
        closers: dict[int, int],
        longest: int,
    ) -> None:
        self.words = words
        self.texts = texts
        self.kinds = kinds
        self.starts = starts
        self.ends = ends
        self.depth = depth
        self.closers = closers
        self.longest = longest


class TokenView:
    """A statement's tokens placed in the file: `offset(i)` is token i's file offset."""

    __slots__ = (
        "base",
        "closers",
        "depth",
        "ends",
        "kinds",
        "longest",
        "n",
        "source",
        "starts",
        "texts",
        "words",
    )

    def __init__(self, tokens: TokenList, source: str, base: int) -> None:
        self.words = tokens.words
        self.texts = tokens.texts
        self.kinds = tokens.kinds
        self.starts = tokens.starts
        self.ends = tokens.ends
        self.depth = tokens.depth
        self.closers = tokens.closers
        self.longest = tokens.longest
        self.n = len(tokens.words)
        self.source = source
        self.base = base

    # ---------------------------------------------------------------- reading words

    def word(self, i: int) -> str:
        return self.words[i] if 0 <= i < self.n else ""

    def at(self, i: int, *sequence: str) -> bool:
        """Whether the words from i on are exactly `sequence`."""
        return i >= 0 and self.words[i : i + len(sequence)] == sequence

    def offset(self, i: int) -> int:
        """File offset of token i (of the last token when i is past the end)."""
        if self.n == 0:
            return self.base
        if i >= self.n:
            return self.base + self.starts[-1]
        return self.base + self.starts[max(i, 0)]

    def text_of(self, start: int, end: int) -> str:
        """The source text of tokens [start, end), as written."""
        end = min(end, self.n)
        if start >= end:
            return ""
        return self.source[self.starts[start] : self.ends[end - 1]]

    def is_name(self, i: int) -> bool:
        return 0 <= i < self.n and self.kinds[i] in (WORD, QUOTED)

    def name(self, i: int) -> str:
        """The identifier at i as PostgreSQL folds it (unquoted names are lower-cased)."""
        return self.texts[i] if self.kinds[i] == QUOTED else self.texts[i].lower()

    def qualified(self, i: int) -> tuple[str | None, int]:
        """A dotted name at i: (the folded, dot-joined name, index after it)."""
        if not self.is_name(i):
            return None, i
        parts = [self.name(i)]
        i += 1
        while self.word(i) == "." and self.is_name(i + 1):
            parts.append(self.name(i + 1))
            i += 2
        return ".".join(parts), i

    # ---------------------------------------------------------------- structure

    def close_of(self, i: int) -> int:
        """Index of the bracket that closes the one at i (n when unbalanced)."""
        return self.closers.get(i, self.n)

    def after_group(self, i: int) -> int:
        """Index after the bracketed group that opens at i (i itself if none opens there)."""
        if self.word(i) in OPEN:
            return min(self.close_of(i) + 1, self.n)
        return i

    def find(self, word: str, start: int, end: int | None = None) -> int:
        """First index of `word` in [start, end) at the depth of `start`; -1 if absent."""
        stop = self.n if end is None else min(end, self.n)
        if start >= stop:
            return -1
        level = self.depth[start]
        words = self.words
        depth = self.depth
        for j in range(start, stop):
            if words[j] == word and depth[j] == level:
                return j
            if depth[j] < level:
                return -1
        return -1

    def contains(self, start: int, end: int, *sequence: str) -> int:
        """First index in [start, end) where `sequence` occurs at the depth of start; -1."""
        if start >= min(end, self.n):
            return -1
        level = self.depth[start]
        for j in range(start, min(end, self.n) - len(sequence) + 1):
            if self.depth[j] == level and self.at(j, *sequence):
                return j
        return -1

    def split(self, start: int, end: int, separator: str = ",") -> list[tuple[int, int]]:
        """Split [start, end) at `separator` tokens at the depth of start."""
        end = min(end, self.n)
        if start >= end:
            return []
        level = self.depth[start]
        pieces: list[tuple[int, int]] = []
        piece_start = start
        for j in range(start, end):
            if self.words[j] == separator and self.depth[j] == level:
                pieces.append((piece_start, j))
                piece_start = j + 1
        pieces.append((piece_start, end))
        return pieces
