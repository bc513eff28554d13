"""sqlglot's PostgreSQL tokenizer and parser, adjusted for linting."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

from sqlglot import Token, exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.parsers.postgres import PostgresParser

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


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    """Why sqlglot rejected a statement; line and column are sqlglot's, within the statement."""

    message: str
    line: int | None = None
    column: int | None = None


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
