"""sqlglot's PostgreSQL tokenizer and parser, adjusted for linting."""

from __future__ import annotations

import logging
import re
import threading

from sqlglot import Token, TokenType, exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.parsers.postgres import PostgresParser

from lockstep.lint.datafacts import Change, DataFacts
from lockstep.lint.reading import SyntaxProblem
from lockstep.lint.tokens import CLOSE, NUMBER, OPEN, QUOTED, STRING, SYMBOL, WORD, TokenList

_POSTGRES = Postgres()


class _QuietFallback(logging.Filter):
    """sqlglot logs a warning when it falls back to exp.Command; the lint reports what it
    cannot analyse itself, as findings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_QuietFallback())


def _tokenizer() -> Postgres.Tokenizer:
    # sqlglot folds everything after VACUUM, REINDEX, LOCK, DO, ... into one string token;
    # the checks read those statements' words, so keep every token. (Set on the instance:
    # with sqlglotc installed the classes are compiled and cannot be subclassed.)
    tokenizer = Postgres.Tokenizer(dialect=_POSTGRES)
    tokenizer._core.commands = set()
    return tokenizer


class _Readers(threading.local):
    """sqlglot's tokenizer and parser keep state while working: one pair per thread."""

    def __init__(self) -> None:
        self.tokenizer = _tokenizer()
        self.parser = PostgresParser(dialect=_POSTGRES)


_READERS = _Readers()


def tokenize(text: str) -> list[Token] | SyntaxProblem:
    """sqlglot tokens of one statement, or why it could not be tokenized."""
    try:
        tokens: list[Token] = _READERS.tokenizer.tokenize(text)
    except TokenError as error:
        return SyntaxProblem(_first_line(error))
    return tokens


def parse(tokens: list[Token], text: str) -> exp.Expr | SyntaxProblem | None:
    """The syntax tree of one statement (None when empty), or why sqlglot rejected it."""
    try:
        trees = _READERS.parser.parse(tokens, text)
    except ParseError as error:
        details = error.errors[0] if error.errors else {}
        line = details.get("line")
        column = details.get("col")
        return SyntaxProblem(
            _first_line(error),
            line if isinstance(line, int) else None,
            column if isinstance(column, int) else None,
        )
    except Exception as error:  # deep nesting (RecursionError) and other parser failures
        return SyntaxProblem(f"the parser failed ({type(error).__name__})")
    if len(trees) != 1:
        return SyntaxProblem("more than one statement")
    tree: exp.Expr | None = trees[0]
    return tree


_TOKEN_REPR = re.compile(r"<Token token_type: TokenType\.\w+, text: (.*?), line: .*?>")
_CLASS_REPR = re.compile(r"<class 'sqlglot\.[\w.]*?(\w+)'>")
_POSITION = re.compile(r"\.?\s*Line \d+, Col: \d+\.?$")


def _first_line(error: Exception) -> str:
    """sqlglot's message without its internal reprs and position (the finding has one)."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    message = _TOKEN_REPR.sub(lambda match: repr(match.group(1)), lines[0])
    message = _CLASS_REPR.sub(lambda match: match.group(1), message)
    message = message.replace("'SENTINEL'", "the end of the statement")
    return _POSITION.sub("", message).rstrip(".")


# ------------------------------------------------------------------ data statements

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


def _identifier_offset(node: exp.Expr) -> int:
    """Offset of the first identifier in `node`, within the statement (-1: unknown)."""
    for identifier in node.find_all(exp.Identifier):
        start = identifier.meta.get("start")
        if isinstance(start, int):
            return start
    return -1


def _duplicates(columns: list[exp.Expr]) -> tuple[tuple[str, int], ...]:
    seen: set[str] = set()
    found: list[tuple[str, int]] = []
    for column in columns:
        identifier = column.this if isinstance(column, exp.Column) else column
        name = _fold(identifier)
        if name is None:
            continue
        if name in seen:
            found.append((name, _identifier_offset(column)))
        seen.add(name)
    return tuple(found)


def _assigned_columns(update: exp.Expr) -> list[exp.Expr]:
    columns: list[exp.Expr] = []
    for assignment in update.args.get("expressions") or []:
        target = assignment.this if isinstance(assignment, exp.EQ) else None
        if isinstance(target, exp.Tuple):
            columns.extend(target.expressions)
        elif target is not None:
            columns.append(target)
    return columns


def data_facts(tree: exp.Expr) -> DataFacts:
    """What the data checks need of a statement's tree (see lint/datafacts.py)."""
    root = next((kind for node_type, kind in _ROOT_KINDS if isinstance(tree, node_type)), "SELECT")
    changes: list[Change] = []
    for node in tree.find_all(exp.Update, exp.Delete, exp.Merge, exp.Insert):
        if isinstance(node, exp.Insert):
            target = node.this
            conflict = node.args.get("conflict")
            action = conflict.args.get("action") if isinstance(conflict, exp.OnConflict) else None
            changes.append(
                Change(
                    "INSERT",
                    table_name(target),
                    True,
                    _duplicates(list(target.expressions)) if isinstance(target, exp.Schema) else (),
                    action is not None and "UPDATE" in str(getattr(action, "this", action)).upper(),
                )
            )
        elif isinstance(node, exp.Update):
            changes.append(
                Change(
                    "UPDATE",
                    table_name(node.this),
                    node.args.get("where") is not None,
                    _duplicates(_assigned_columns(node)),
                )
            )
        elif isinstance(node, exp.Delete):
            changes.append(
                Change("DELETE", table_name(node.this), node.args.get("where") is not None, ())
            )
        else:
            changes.append(Change("MERGE", table_name(node.this), True, ()))
    reads: list[str] = []
    if not changes:
        named_queries = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            name = table_name(table)
            if name is not None and name not in named_queries and name not in reads:
                reads.append(name)
    locking = any(True for _ in tree.find_all(exp.Lock))
    return DataFacts(root, tuple(changes), tuple(reads), locking)


# ------------------------------------------------------------------ tokens

_STRING_TYPES = frozenset(
    {
        TokenType.STRING,
        TokenType.BIT_STRING,
        TokenType.HEX_STRING,
        TokenType.BYTE_STRING,
        TokenType.NATIONAL_STRING,
        TokenType.NATIONAL_RAW_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.UNICODE_STRING,
    }
)


def token_list(tokens: list[Token]) -> TokenList:
    """sqlglot's tokens as the lint's flat TokenList (see lint/tokens.py)."""
    words: list[str] = []
    texts: list[str] = []
    kinds: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    depth: list[int] = []
    add_word, add_text, add_kind = words.append, texts.append, kinds.append
    add_start, add_end, add_depth = starts.append, ends.append, depth.append
    closers: dict[int, int] = {}
    opened: list[int] = []
    level = 0
    for token in tokens:
        text = token.text
        token_type = token.token_type
        if token_type in _STRING_TYPES:
            word, kind = "", STRING
        elif token_type is TokenType.IDENTIFIER:
            word, kind = "", QUOTED
        elif token_type is TokenType.NUMBER:
            word, kind = "", NUMBER
        elif text[:1].isalpha() or text[:1] == "_":
            word, kind = text.upper(), WORD
            if " " in text or "\t" in text or "\n" in text:
                # sqlglot's multi-word keywords: one entry per word
                for part in text.split()[:-1]:
                    add_word(part.upper())
                    add_text(part)
                    add_kind(WORD)
                    add_start(token.start)
                    add_end(token.end + 1)
                    add_depth(level)
                text = text.split()[-1]
                word = text.upper()
        else:
            word, kind = text, SYMBOL
            if word in CLOSE and level:
                level -= 1
                closers[opened.pop()] = len(words)
        add_word(word)
        add_text(text)
        add_kind(kind)
        add_start(token.start)
        add_end(token.end + 1)
        add_depth(level)
        if kind == SYMBOL and word in OPEN:
            opened.append(len(words) - 1)
            level += 1
    return TokenList(
        tuple(words),
        tuple(texts),
        tuple(kinds),
        tuple(starts),
        tuple(ends),
        tuple(depth),
        closers,
        max(map(len, texts), default=0),
    )
