"""PostgreSQL's lexical rules for one statement, straight to the lint's TokenList.

One regular expression walks the statement; each match is the whitespace and comments before
a token, then the token: a string ('...', E'...', B'...', X'...', N'...', U&'...',
$tag$...$tag$), a quoted identifier ("...", U&"..."), a number, a positional parameter, a
name or keyword, an operator (PostgreSQL's rule: a run of operator characters that ends in +
or - only when it holds one of ~ ! @ # % ^ & | ` ?), or punctuation. A string's and a quoted
identifier's text is its content (doubled quotes undone); a name's word is its upper-cased
text. The statement was split by lint/split.py, so its quotes are balanced; a character
PostgreSQL's lexer does not know becomes a symbol of its own (the parser reports it). Block
comments nest two deep here (PostgreSQL allows any depth; deeper ones are not seen in
migrations).
"""

from __future__ import annotations

import re

from lockstep.lint.tokens import CLOSE, NUMBER, OPEN, QUOTED, STRING, SYMBOL, WORD, TokenList

_COMMENT = r"/\*(?:[^*/]|\*(?!/)|/(?!\*)|/\*(?:[^*]|\*(?!/))*\*/)*\*/"
_OPERATOR_CHAR = r"(?:[*<>=~!@#%^&|`?+]|-(?!-)|/(?!\*))"
_TOKEN = re.compile(
    rf"""
    (?:\s+|--[^\n]*|{_COMMENT})*+
    (?:
      (?P<escape>[eE]'(?:[^'\\]|\\.|'')*')
    | (?P<prefixed>[bBxXnN]'[^']*')
    | (?P<unicode>[uU]&'(?:[^']|'')*')
    | (?P<unicode_quoted>[uU]&"(?:[^"]|"")*")
    | (?P<word>[^\W\d][\w$]*)
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")*")
    | (?P<number>0[xXoObB][0-9a-fA-F_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)
    | (?P<dollar>\$(?P<tag>(?:[^\W\d]\w*)?)\$.*?\$(?P=tag)\$)
    | (?P<operator>
          (?:[*<>=+]|-(?!-)|/(?!\*))*[~!@#%^&|`?]{_OPERATOR_CHAR}*
        | (?:[*<>=+]|-(?!-)|/(?!\*))*(?:[*<>=]|/(?!\*))
        | [+\-]
      )
    | (?P<symbol>::|:=|\$\d+|.)
    )?
    """,
    re.VERBOSE | re.DOTALL,
)
_GROUPS = _TOKEN.groupindex
_ESCAPE_STRING = _GROUPS["escape"]
_PREFIXED = _GROUPS["prefixed"]
_UNICODE = _GROUPS["unicode"]
_UNICODE_QUOTED = _GROUPS["unicode_quoted"]
_WORD = _GROUPS["word"]
_STRING = _GROUPS["string"]
_QUOTED = _GROUPS["quoted"]
_NUMBER = _GROUPS["number"]
_DOLLAR = _GROUPS["dollar"]
_OPERATOR = _GROUPS["operator"]
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_BRACKETS = OPEN | CLOSE
_KINDS = dict.fromkeys(range(_OPERATOR, _TOKEN.groups + 1), SYMBOL) | {
    _WORD: WORD,
    _NUMBER: NUMBER,
    _STRING: STRING,
    _ESCAPE_STRING: STRING,
    _PREFIXED: STRING,
    _UNICODE: STRING,
    _DOLLAR: STRING,
    _QUOTED: QUOTED,
    _UNICODE_QUOTED: QUOTED,
}
_AS_WRITTEN = frozenset(group for group, kind in _KINDS.items() if kind in (WORD, NUMBER, SYMBOL))


def _content(group: int, token: str) -> str:
    """The content of a string or quoted identifier token."""
    if group == _STRING:
        return token[1:-1].replace("''", "'")
    if group == _QUOTED:
        return token[1:-1].replace('""', '"')
    if group == _DOLLAR:
        tag_end = token.index("$", 1) + 1
        return token[tag_end:-tag_end]
    if group == _ESCAPE_STRING:
        body = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[2:-1])
        return body.replace("''", "'")
    if group == _PREFIXED:
        return token[2:-1]
    if group == _UNICODE:
        return token[3:-1].replace("''", "'")
    return token[3:-1].replace('""', '"')  # _UNICODE_QUOTED


def tokenize(text: str) -> TokenList:
    """The tokens of one statement, with bracket depths and matching brackets."""
    # One pass of the regular expression, then one comprehension per field: a Python-level
    # loop with a branch per token costs several times the matching itself.
    matches = [match for match in _TOKEN.finditer(text) if match.lastindex]
    groups = [match.lastindex or 0 for match in matches]
    raw = [match.group(group) for match, group in zip(matches, groups, strict=True)]
    texts = [
        token if group in _AS_WRITTEN else _content(group, token)
        for token, group in zip(raw, groups, strict=True)
    ]
    words = [
        token.upper() if group == _WORD else token if group >= _OPERATOR else ""
        for token, group in zip(raw, groups, strict=True)
    ]
    brackets = [i for i, token in enumerate(raw) if token in _BRACKETS]
    depth, closers = _nesting(words, brackets)
    return TokenList(
        tuple(words),
        tuple(texts),
        tuple([_KINDS[group] for group in groups]),
        tuple([match.start(group) for match, group in zip(matches, groups, strict=True)]),
        tuple([match.end() for match in matches]),
        depth,
        closers,
        max(map(len, texts), default=0),
    )


def _nesting(words: list[str], brackets: list[int]) -> tuple[tuple[int, ...], dict[int, int]]:
    """Each token's bracket depth (a closing bracket has the depth outside it) and which
    bracket closes which; work only at the brackets."""
    depth: list[int] = []
    closers: dict[int, int] = {}
    opened: list[int] = []
    level = 0
    for i in brackets:
        depth.extend([level] * (i - len(depth)))
        if words[i] in OPEN:
            depth.append(level)
            opened.append(i)
            level += 1
        else:
            if level:
                level -= 1
                closers[opened.pop()] = i
            depth.append(level)
    depth.extend([level] * (len(words) - len(depth)))
    return tuple(depth), closers
