"""PostgreSQL facts the rules encode: lock strength, data types, function volatility, versions.

Sources: the ALTER TABLE, CREATE INDEX and explicit-locking pages of the PostgreSQL docs,
squawk's rule docs and strong_migrations' `change_type_safe?` (see
docs/lint-rules.md for the rule list).
"""

from __future__ import annotations

from lockstep.lint.model import LOCK_STRENGTH
from lockstep.lint.record import FrozenRecord
from lockstep.lint.tokens import NUMBER, QUOTED, WORD, TokenView

Version = tuple[int, int]

# ---------------------------------------------------------------------------- versions


def constant_default_is_metadata_only(version: Version) -> bool:
    """ADD COLUMN with a non-volatile default stores it in the catalog (no rewrite) on 11+."""
    return version >= (11, 0)


def set_not_null_uses_validated_check(version: Version) -> bool:
    """SET NOT NULL skips its scan when a validated CHECK (c IS NOT NULL) exists, on 12+."""
    return version >= (12, 0)


def has_reindex_concurrently(version: Version) -> bool:
    return version >= (12, 0)


def has_detach_partition_concurrently(version: Version) -> bool:
    return version >= (14, 0)


def enum_add_value_runs_in_transaction(version: Version) -> bool:
    """ALTER TYPE ... ADD VALUE fails inside a transaction block before 12."""
    return version >= (12, 0)


def concurrent_index_may_corrupt(version: Version) -> bool:
    """CREATE/REINDEX ... CONCURRENTLY can corrupt indexes on 14.0 to 14.3."""
    return (14, 0) <= version <= (14, 3)


# ---------------------------------------------------------------------------- locks


def stronger_lock(first: str, second: str) -> str:
    return first if LOCK_STRENGTH[first] >= LOCK_STRENGTH[second] else second


def blocks_traffic(lock: str) -> bool:
    """Whether the lock conflicts with the ROW EXCLUSIVE of ordinary writes, or stronger."""
    return LOCK_STRENGTH[lock] >= LOCK_STRENGTH["SHARE UPDATE EXCLUSIVE"]


# ---------------------------------------------------------------------------- data types

_TYPE_ALIASES: dict[str, str] = {
    "int": "integer",
    "int4": "integer",
    "integer": "integer",
    "int2": "smallint",
    "smallint": "smallint",
    "int8": "bigint",
    "bigint": "bigint",
    "serial": "serial",
    "serial4": "serial",
    "bigserial": "bigserial",
    "serial8": "bigserial",
    "smallserial": "smallserial",
    "serial2": "smallserial",
    "varchar": "varchar",
    "character varying": "varchar",
    "char varying": "varchar",
    "char": "char",
    "character": "char",
    "bpchar": "char",
    "nchar": "char",
    "national character": "char",
    "numeric": "numeric",
    "decimal": "numeric",
    "dec": "numeric",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz",
    "timestamp with time zone": "timestamptz",
    "time": "time",
    "time without time zone": "time",
    "timetz": "timetz",
    "time with time zone": "timetz",
    "double precision": "float8",
    "float8": "float8",
    "float4": "float4",
    "real": "float4",
    "bool": "boolean",
    "boolean": "boolean",
    "bit varying": "varbit",
    "varbit": "varbit",
}

SERIAL_TYPES = frozenset({"serial", "bigserial", "smallserial"})
INT_TYPES = frozenset({"integer", "serial"})
SMALLINT_TYPES = frozenset({"smallint", "smallserial"})
_PRECISION_TYPES = frozenset({"timestamp", "timestamptz", "time", "timetz", "interval"})
_LENGTH_TYPES = frozenset({"varchar", "varbit"})
_TYPE_TAIL_WORDS = frozenset({"WITH", "WITHOUT", "TIME", "ZONE", "VARYING", "PRECISION"})


class PgType(FrozenRecord):
    """A column type: canonical name, integer modifiers (None when none), array or not."""

    __slots__ = ("array", "name", "params", "text")

    name: str
    params: tuple[int, ...] | None
    array: bool
    text: str

    def __init__(
        self,
        name: str,
        params: tuple[int, ...] | None,
        array: bool,
        text: str,
    ) -> None:
        self.name = name
        self.params = params
        self.array = array
        self.text = text


def parse_type(view: TokenView, start: int, end: int) -> PgType | None:
    """Read the type written in tokens [start, end); None when there is none."""
    parts: list[str] = []
    params: tuple[int, ...] | None = None
    array = False
    i = start
    while i < end:
        word = view.words[i]
        kind = view.kinds[i]
        if word == "(":
            close = view.close_of(i)
            values = [
                view.texts[j]
                for j in range(i + 1, min(close, end))
                if view.kinds[j] == NUMBER and view.depth[j] == view.depth[i] + 1
            ]
            if values and all(value.isdigit() for value in values):
                params = tuple(int(value) for value in values)
            i = close + 1
        elif word == "[":
            array = True
            i = view.close_of(i) + 1
        elif word == "ARRAY":
            array = True
            i += 1
        elif word == ".":
            parts.append(".")
            i += 1
        elif kind == QUOTED:
            parts.append(f'"{view.texts[i]}"')
            i += 1
        elif kind == WORD:
            if parts and parts[-1] != "." and word not in _TYPE_TAIL_WORDS:
                # "interval day to second" and similar: fields that do not change the type.
                if parts[0] != "interval":
                    break
                i += 1
                continue
            parts.append(view.texts[i].lower())
            i += 1
        else:
            break
    if not parts:
        return None
    raw = " ".join(parts).replace(" . ", ".")
    if raw.startswith("pg_catalog."):
        raw = raw[len("pg_catalog.") :]
    name = _TYPE_ALIASES.get(raw, raw)
    if name.startswith("float") and name not in ("float4", "float8"):
        name = "float8" if params is None or params[0] > 24 else "float4"
        params = None
    return PgType(name, params, array, " ".join(view.text_of(start, end).split()))


def type_change_is_safe(old: PgType, new: PgType) -> bool:
    """Whether ALTER COLUMN TYPE from `old` to `new` is binary-coercible (no rewrite).

    The strong_migrations list: a varchar limit increase or removal, varchar to text, text to
    unlimited varchar, a numeric precision increase at the same scale, a timestamp, time or
    interval precision increase, cidr to inet. timestamp <-> timestamptz is safe only when
    the session time zone is UTC, which a file does not show, so it is not counted.
    """
    if old.array != new.array:
        return False
    if old.name == new.name and old.params == new.params:
        return True
    if old.name in ("varchar", "text") and new.name == "text":
        return True
    if old.name == "text" and new.name == "varchar":
        return new.params is None
    if old.name == new.name and old.name in _LENGTH_TYPES:
        return new.params is None or (old.params is not None and new.params[0] >= old.params[0])
    if old.name == new.name == "numeric":
        if new.params is None:
            return True
        if old.params is None or len(old.params) > 2:
            return False
        old_scale = old.params[1] if len(old.params) == 2 else 0
        new_scale = new.params[1] if len(new.params) == 2 else 0
        return new.params[0] >= old.params[0] and new_scale == old_scale
    if old.name == new.name and old.name in _PRECISION_TYPES:
        old_precision = old.params[-1] if old.params else 6
        new_precision = new.params[-1] if new.params else 6
        return new_precision >= old_precision
    return old.name == "cidr" and new.name == "inet"


def type_change_may_lose_data(new: PgType, has_using: bool) -> bool:
    """Whether a type change may truncate or round values (a limit, a scale, a USING)."""
    return has_using or new.params is not None or new.name == "char"


# ---------------------------------------------------------------------------- volatility

VOLATILE_FUNCTIONS = frozenset(
    {
        "random",
        "random_normal",
        "setseed",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "uuidv4",
        "uuidv7",
        "gen_random_bytes",
        "gen_salt",
        "nextval",
        "currval",
        "lastval",
        "setval",
        "txid_current",
        "txid_current_if_assigned",
        "pg_current_xact_id",
        "pg_current_xact_id_if_assigned",
        "pg_sleep",
    }
)
"""Functions that are VOLATILE in pg_proc (provolatile = 'v'): a default that calls one is
evaluated per row, so ADD COLUMN rewrites the table."""

NON_VOLATILE_FUNCTIONS = frozenset(
    {
        # date and time (STABLE: evaluated once per statement)
        "now",
        "transaction_timestamp",
        "statement_timestamp",
        "current_timestamp",
        "current_date",
        "current_time",
        "localtime",
        "localtimestamp",
        "date_trunc",
        "date_part",
        "date_bin",
        "extract",
        "make_date",
        "make_time",
        "make_timestamp",
        "make_timestamptz",
        "make_interval",
        "to_timestamp",
        "to_date",
        "to_char",
        "to_number",
        "timezone",
        "age",
        "justify_days",
        "justify_hours",
        "justify_interval",
        # session information
        "current_user",
        "session_user",
        "current_role",
        "current_schema",
        "current_database",
        "current_catalog",
        "current_setting",
        "version",
        "inet_client_addr",
        "pg_backend_pid",
        # strings
        "lower",
        "upper",
        "initcap",
        "length",
        "char_length",
        "character_length",
        "octet_length",
        "bit_length",
        "substr",
        "substring",
        "left",
        "right",
        "lpad",
        "rpad",
        "trim",
        "btrim",
        "ltrim",
        "rtrim",
        "replace",
        "translate",
        "repeat",
        "reverse",
        "split_part",
        "concat",
        "concat_ws",
        "format",
        "position",
        "strpos",
        "overlay",
        "regexp_replace",
        "regexp_substr",
        "quote_ident",
        "quote_literal",
        "quote_nullable",
        "to_hex",
        "chr",
        "ascii",
        "md5",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "encode",
        "decode",
        "convert_to",
        "convert_from",
        "uuid_generate_v3",
        "uuid_generate_v5",
        "uuid_nil",
        "uuid_ns_url",
        "uuid_ns_dns",
        "uuid_ns_oid",
        "uuid_ns_x500",
        # conditionals and numbers
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "abs",
        "round",
        "trunc",
        "floor",
        "ceil",
        "ceiling",
        "mod",
        "power",
        "sqrt",
        "exp",
        "ln",
        "log",
        "sign",
        "div",
        "width_bucket",
        "pi",
        # structures and casts
        "cast",
        "array",
        "row",
        "array_fill",
        "array_length",
        "array_append",
        "array_prepend",
        "array_cat",
        "cardinality",
        "string_to_array",
        "array_to_string",
        "to_json",
        "to_jsonb",
        "json_build_object",
        "jsonb_build_object",
        "json_build_array",
        "jsonb_build_array",
        "json_object",
        "jsonb_object",
        "row_to_json",
        "array_to_json",
        "jsonb_set",
        "jsonb_strip_nulls",
        "int4range",
        "int8range",
        "numrange",
        "tsrange",
        "tstzrange",
        "daterange",
        "point",
        "inet",
        "cidr",
        "text",
        "varchar",
        "numeric",
        "int4",
        "int8",
        "bool",
        "date",
        "timestamp",
        "timestamptz",
        "interval",
        "uuid",
        "jsonb",
        "json",
        "to_tsvector",
        "setweight",
    }
)
"""Common IMMUTABLE or STABLE functions (evaluated once: ADD COLUMN stores the value)."""


class DefaultValue(FrozenRecord):
    """A DEFAULT expression and what is known about its volatility.

    `volatile` lists calls of known volatile functions; `unknown` lists calls of functions
    not known to be non-volatile, which are treated as volatile (a rewrite) to be safe.
    """

    __slots__ = ("is_null", "offset", "text", "unknown", "volatile")

    text: str
    offset: int
    is_null: bool
    volatile: tuple[str, ...]
    unknown: tuple[str, ...]

    def __init__(
        self,
        text: str,
        offset: int,
        is_null: bool,
        volatile: tuple[str, ...],
        unknown: tuple[str, ...],
    ) -> None:
        self.text = text
        self.offset = offset
        self.is_null = is_null
        self.volatile = volatile
        self.unknown = unknown

    def rewrites_table(self, version: Version) -> bool:
        """Whether ADD COLUMN with this default rewrites the table on `version`."""
        if self.is_null:
            return False
        if not constant_default_is_metadata_only(version):
            return True
        return bool(self.volatile or self.unknown)


def read_default(view: TokenView, start: int, end: int) -> DefaultValue:
    """Classify the expression in tokens [start, end)."""
    volatile: list[str] = []
    unknown: list[str] = []
    words = view.words
    significant = [i for i in range(start, end) if words[i] != "(" and words[i] != ")"]
    is_null = (
        bool(significant)
        and words[significant[0]] == "NULL"
        and (len(significant) == 1 or words[significant[1]] == "::")
    )
    for i in range(start, end):
        if view.kinds[i] not in (WORD, QUOTED):
            continue
        if i + 1 < end and words[i + 1] == "(":
            previous = words[i - 1] if i > start else ""
            if previous in ("::", "AS"):
                continue  # a type with modifiers: '1.5'::numeric(10, 2), CAST(x AS varchar(9))
            name = view.name(i)
            if name in VOLATILE_FUNCTIONS:
                volatile.append(name)
            elif name not in NON_VOLATILE_FUNCTIONS:
                unknown.append(name)
    return DefaultValue(
        text=" ".join(view.text_of(start, end).split()),
        offset=view.offset(start),
        is_null=is_null,
        volatile=tuple(dict.fromkeys(volatile)),
        unknown=tuple(dict.fromkeys(unknown)),
    )
