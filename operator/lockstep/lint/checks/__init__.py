"""Per-statement checks: what kind of statement it is, and the check that reads it."""

from __future__ import annotations

from collections.abc import Callable

from lockstep.lint.checks import data, indexes, objects, session, tables
from lockstep.lint.checks.base import Context
from lockstep.lint.tokens import WORD, TokenView

Check = Callable[[Context], None]

_CREATE_MODIFIERS = frozenset(
    {
        "OR",
        "REPLACE",
        "GLOBAL",
        "LOCAL",
        "TEMP",
        "TEMPORARY",
        "UNLOGGED",
        "UNIQUE",
        "RECURSIVE",
        "TRUSTED",
        "PROCEDURAL",
        "DEFAULT",
        "CONSTRAINT",
    }
)
_OBJECT_PHRASES: tuple[tuple[str, ...], ...] = (
    ("FOREIGN", "DATA", "WRAPPER"),
    ("TEXT", "SEARCH", "CONFIGURATION"),
    ("TEXT", "SEARCH", "DICTIONARY"),
    ("TEXT", "SEARCH", "PARSER"),
    ("TEXT", "SEARCH", "TEMPLATE"),
    ("MATERIALIZED", "VIEW"),
    ("FOREIGN", "TABLE"),
    ("EVENT", "TRIGGER"),
    ("ACCESS", "METHOD"),
    ("USER", "MAPPING"),
    ("DEFAULT", "PRIVILEGES"),
    ("LARGE", "OBJECT"),
    ("OPERATOR", "CLASS"),
    ("OPERATOR", "FAMILY"),
)
_PHRASE_STATEMENTS: tuple[tuple[str, ...], ...] = (
    ("REFRESH", "MATERIALIZED", "VIEW"),
    ("IMPORT", "FOREIGN", "SCHEMA"),
    ("START", "TRANSACTION"),
    ("PREPARE", "TRANSACTION"),
    ("COMMIT", "PREPARED"),
    ("ROLLBACK", "PREPARED"),
    ("SECURITY", "LABEL"),
    ("REASSIGN", "OWNED"),
)
_PHRASE_STARTS = frozenset(phrase[0] for phrase in _OBJECT_PHRASES + _PHRASE_STATEMENTS)
_SINGLE_WORD_STATEMENTS = frozenset(
    {
        "ABORT",
        "ANALYZE",
        "ANALYSE",
        "BEGIN",
        "CALL",
        "CHECKPOINT",
        "CLOSE",
        "CLUSTER",
        "COMMENT",
        "COMMIT",
        "COPY",
        "DEALLOCATE",
        "DECLARE",
        "DELETE",
        "DISCARD",
        "DO",
        "END",
        "EXECUTE",
        "EXPLAIN",
        "FETCH",
        "GRANT",
        "INSERT",
        "LISTEN",
        "LOAD",
        "LOCK",
        "MERGE",
        "MOVE",
        "NOTIFY",
        "PREPARE",
        "REINDEX",
        "RELEASE",
        "RESET",
        "REVOKE",
        "ROLLBACK",
        "SAVEPOINT",
        "SELECT",
        "SET",
        "SHOW",
        "TABLE",
        "TRUNCATE",
        "UNLISTEN",
        "UPDATE",
        "VACUUM",
        "VALUES",
        "WITH",
    }
)
_SYNONYMS = {
    "START TRANSACTION": "BEGIN",
    "END": "COMMIT",
    "ABORT": "ROLLBACK",
    "ANALYSE": "ANALYZE",
    "TABLE": "SELECT",
    "VALUES": "SELECT",
}


def classify(view: TokenView) -> tuple[str, int]:
    """The statement's kind ("CREATE TABLE", "UPDATE", ...) and the index after its words.

    The kind is "" when the statement does not start like a PostgreSQL statement.
    """
    i = 0
    while view.word(i) == "(":
        i += 1
    first = view.word(i)
    if first in ("CREATE", "ALTER", "DROP"):
        j = i + 1
        if first == "CREATE":
            while view.word(j) in _CREATE_MODIFIERS:
                j += 1
        target = view.word(j)
        if target in _PHRASE_STARTS:
            for phrase in _OBJECT_PHRASES:
                if view.at(j, *phrase):
                    return f"{first} {' '.join(phrase)}", j + len(phrase)
        if not target or view.kinds[j] != WORD:
            return "", i
        return f"{first} {target}", j + 1
    if first in _PHRASE_STARTS:
        for phrase in _PHRASE_STATEMENTS:
            if view.at(i, *phrase):
                kind = " ".join(phrase)
                return _SYNONYMS.get(kind, kind), i + len(phrase)
    if first == "ROLLBACK" and view.word(i + 1) in ("TO",):
        return "ROLLBACK TO SAVEPOINT", i + 1
    if first in _SINGLE_WORD_STATEMENTS:
        return _SYNONYMS.get(first, first), i + 1
    return "", i


_EXACT: dict[str, Check] = {
    "CREATE TABLE": tables.create_table,
    "ALTER TABLE": tables.alter_table,
    "CREATE INDEX": indexes.create_index,
    "DROP INDEX": indexes.drop_index,
    "REINDEX": indexes.reindex,
    "TRUNCATE": objects.truncate,
    "VACUUM": objects.vacuum,
    "CLUSTER": objects.cluster,
    "ANALYZE": objects.analyze,
    "REFRESH MATERIALIZED VIEW": objects.refresh_materialized_view,
    "LOCK": objects.lock_table,
    "ALTER TYPE": objects.alter_type,
    "CREATE DOMAIN": objects.create_domain,
    "ALTER DOMAIN": objects.alter_domain,
    "ALTER SCHEMA": objects.alter_schema,
    "ALTER VIEW": objects.alter_view,
    "ALTER MATERIALIZED VIEW": objects.alter_view,
    "ALTER INDEX": objects.alter_index,
    "ALTER SEQUENCE": objects.alter_sequence,
    "COMMENT": objects.comment,
    "CREATE TRIGGER": objects.create_trigger,
    "GRANT": objects.grant,
    "REVOKE": objects.revoke,
    "DO": objects.opaque,
    "CALL": objects.opaque,
    "EXECUTE": objects.opaque,
    "SELECT": data.data_statement,
    "INSERT": data.data_statement,
    "UPDATE": data.data_statement,
    "DELETE": data.data_statement,
    "MERGE": data.data_statement,
    "WITH": data.data_statement,
    "COPY": data.copy,
    "SET": session.set_statement,
    "RESET": session.reset,
    "BEGIN": session.transaction,
    "COMMIT": session.transaction,
    "ROLLBACK": session.transaction,
    "PREPARE TRANSACTION": session.transaction,
    "COMMIT PREPARED": session.transaction,
    "ROLLBACK PREPARED": session.transaction,
}


def check_for(kind: str, view: TokenView) -> Check:
    """The check that reads statements of `kind`."""
    found = _EXACT.get(kind)
    if found is not None:
        return found
    if kind == "EXPLAIN":
        return objects.opaque if "ANALYZE" in view.words else objects.neutral
    if kind.startswith("DROP "):
        return objects.drop
    if kind.startswith("CREATE "):
        return objects.create_object
    if kind.startswith("ALTER "):
        return objects.alter_object
    return objects.neutral
