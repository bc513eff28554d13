"""The schema model, read from `pg_catalog` with our own queries (no GPL parser involved).

Every definition is rendered by PostgreSQL itself (`format_type`, `pg_get_expr`,
`pg_get_constraintdef`, `pg_get_indexdef`, `pg_get_viewdef`) with `search_path` set to
`pg_catalog` only, so names come out schema-qualified and two databases read by the same server
version render equal objects as equal text: that is what makes a diff of two catalogs exact.
Names are quoted by the server (`quote_ident`), so they can be written back into SQL as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lockstep.postgres import Connection, server_version

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "lockstep")
"""Never part of an application schema (`lockstep` holds the migration ledger)."""


@dataclass(frozen=True)
class Column:
    name: str
    """Quoted as SQL needs it (`"Order"`, `email`)."""
    type: str
    """`format_type`: `character varying(40)`, `public.mood`, `bigint[]`."""
    not_null: bool = False
    default: str | None = None
    identity: str = ""
    """"" (none), "always" or "by default"."""
    generated: str | None = None
    """The expression of a stored generated column."""
    collation: str | None = None
    """A collation other than the type's default (quoted, qualified)."""
    comment: str | None = None


@dataclass(frozen=True)
class Constraint:
    name: str
    kind: str
    """primary, unique, foreign, check or exclude."""
    definition: str
    """`pg_get_constraintdef`: `FOREIGN KEY (user_id) REFERENCES public.users(id)`."""
    validated: bool = True
    columns: tuple[str, ...] = ()
    references: str | None = None
    """The referenced table of a foreign key (qualified)."""

    @property
    def not_null_column(self) -> str | None:
        """The column of a `CHECK ((c IS NOT NULL))` constraint."""
        text = self.definition
        if self.kind != "check" or not text.startswith("CHECK ((") or len(self.columns) != 1:
            return None
        inner = text.removeprefix("CHECK ((").removesuffix("))").removesuffix(")) NOT VALID")
        column = self.columns[0]
        return column if inner in (f"{column} IS NOT NULL",) else None


@dataclass(frozen=True)
class Index:
    name: str
    """Qualified (`public.users_email_idx`)."""
    table: str
    definition: str
    """`pg_get_indexdef`: `CREATE INDEX users_email_idx ON public.users USING btree (email)`."""
    unique: bool = False
    valid: bool = True
    columns: tuple[str, ...] = ()
    """Columns it reads (key, INCLUDE, expression and predicate columns)."""
    constraint: str | None = None
    """The constraint it backs (a primary key, unique or exclusion constraint), if any."""
    bytes: int = 0


@dataclass(frozen=True)
class Table:
    name: str
    """Qualified and quoted: `public.users`."""
    columns: tuple[Column, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    indexes: tuple[Index, ...] = ()
    comment: str | None = None
    unlogged: bool = False
    partitioned: bool = False
    rows: float = 0.0
    """`pg_class.reltuples` (an estimate; -1 when never analysed, then 0 here)."""
    bytes: int = 0
    """`pg_total_relation_size`: table, indexes and TOAST."""
    table_bytes: int = 0
    """`pg_relation_size` of the table alone: what a rewrite or a scan reads."""
    privileges: frozenset[tuple[str, str]] = frozenset()
    """(grantee, privilege) pairs from the ACL, owner's implicit rights aside."""

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def constraint(self, name: str) -> Constraint | None:
        return next((c for c in self.constraints if c.name == name), None)


@dataclass(frozen=True)
class Enum:
    name: str
    labels: tuple[str, ...]
    comment: str | None = None


@dataclass(frozen=True)
class SequenceDef:
    name: str
    data_type: str
    start: int
    increment: int
    minimum: int
    maximum: int
    cache: int
    cycle: bool
    owned_by: str | None = None
    """`table.column` of a serial column."""


@dataclass(frozen=True)
class View:
    name: str
    definition: str
    materialized: bool = False
    columns: tuple[tuple[str, str], ...] = ()
    """(name, type) of each output column."""
    reads: tuple[str, ...] = ()
    """Qualified names of the tables and views it reads."""
    reads_columns: tuple[tuple[str, str], ...] = ()
    """(table, column) pairs it reads: a drop or type change of one must recreate it."""
    comment: str | None = None
    indexes: tuple[Index, ...] = ()
    """Indexes of a materialized view."""


@dataclass(frozen=True)
class Catalog:
    """One database's application schema."""

    version: tuple[int, int] = (15, 0)
    schemas: tuple[str, ...] = ()
    extensions: tuple[tuple[str, str], ...] = ()
    """(name, schema)."""
    enums: tuple[Enum, ...] = ()
    sequences: tuple[SequenceDef, ...] = ()
    tables: tuple[Table, ...] = ()
    views: tuple[View, ...] = ()
    schema_comments: tuple[tuple[str, str], ...] = ()
    by_name: dict[str, Table] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({table.name: table for table in self.tables})

    def table(self, name: str) -> Table | None:
        return self.by_name.get(name)

    def view(self, name: str) -> View | None:
        return next((v for v in self.views if v.name == name), None)


# ---------------------------------------------------------------------------------- reading


def introspect(conn: Connection, schemas: Sequence[str] | None = None) -> Catalog:
    """Read the application schema: every schema but the system ones (or just `schemas`).

    Runs in one read-only transaction, so the live database is read from a single snapshot
    and nothing can be changed by it.
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SELECT set_config('search_path', 'pg_catalog', true)")
        wanted = _schemas(conn, schemas)
        return Catalog(
            version=server_version(conn),
            schemas=tuple(name for _, name in wanted),
            extensions=tuple(_rows(conn, _EXTENSIONS, ())),
            enums=_enums(conn, [oid for oid, _ in wanted]),
            sequences=_sequences(conn, [oid for oid, _ in wanted]),
            tables=_tables(conn, [oid for oid, _ in wanted]),
            views=_views(conn, [oid for oid, _ in wanted]),
            schema_comments=tuple(
                (name, comment)
                for name, comment in _rows(
                    conn,
                    "SELECT quote_ident(nspname), obj_description(oid, 'pg_namespace') "
                    "FROM pg_namespace WHERE oid = ANY(%s) ORDER BY 1",
                    ([oid for oid, _ in wanted],),
                )
                if comment
            ),
        )


def _rows(conn: Connection, query: Any, params: Any) -> list[tuple[Any, ...]]:
    return conn.fetch_all(query, params)


def _schemas(conn: Connection, schemas: Sequence[str] | None) -> list[tuple[int, str]]:
    rows = _rows(
        conn,
        "SELECT n.oid, quote_ident(n.nspname), n.nspname FROM pg_namespace n "
        "WHERE n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%' "
        "AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass "
        "AND d.objid = n.oid AND d.deptype = 'e') ORDER BY 2",
        (list(SYSTEM_SCHEMAS),),
    )
    if schemas is not None:
        rows = [row for row in rows if row[2] in schemas or row[1] in schemas]
    return [(oid, quoted) for oid, quoted, _ in rows]


_NOT_FROM_EXTENSION = (
    "NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = {catalog}::regclass "
    "AND d.objid = {oid} AND d.deptype = 'e')"
)


def _not_extension(catalog: str, oid: str) -> str:
    return _NOT_FROM_EXTENSION.format(catalog=f"'{catalog}'", oid=oid)


_EXTENSIONS = (
    "SELECT quote_ident(e.extname), quote_ident(n.nspname) FROM pg_extension e "
    "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1"
)


def _enums(conn: Connection, schema_oids: list[int]) -> tuple[Enum, ...]:
    rows = _rows(
        conn,
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(t.typname), "
        "array_agg(e.enumlabel ORDER BY e.enumsortorder), obj_description(t.oid, 'pg_type') "
        "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "JOIN pg_enum e ON e.enumtypid = t.oid "
        f"WHERE t.typnamespace = ANY(%s) AND {_not_extension('pg_type', 't.oid')} "
        "GROUP BY 1, t.oid ORDER BY 1",
        (schema_oids,),
    )
    return tuple(Enum(name, tuple(labels), comment) for name, labels, comment in rows)


def _sequences(conn: Connection, schema_oids: list[int]) -> tuple[SequenceDef, ...]:
    rows = _rows(
        conn,
        "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
        "format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, "
        "s.seqcache, s.seqcycle, "
        "(SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || '.' || "
        "quote_ident(a.attname) FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid "
        "JOIN pg_namespace tn ON tn.oid = t.relnamespace JOIN pg_attribute a "
        "ON a.attrelid = t.oid AND a.attnum = d.refobjsubid WHERE d.classid = "
        "'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass "
        "AND d.deptype = 'a') "
        "FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relnamespace = ANY(%s) AND {_not_extension('pg_class', 'c.oid')} "
        # identity columns own their sequence; it is part of the column
        "AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
        "AND d.objid = c.oid AND d.deptype = 'i') ORDER BY 1",
        (schema_oids,),
    )
    return tuple(SequenceDef(*row) for row in rows)


_CONSTRAINT_KINDS = {"p": "primary", "u": "unique", "f": "foreign", "c": "check", "x": "exclude"}


def _tables(conn: Connection, schema_oids: list[int]) -> tuple[Table, ...]:
    tables = _rows(
        conn,
        "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
        "obj_description(c.oid, 'pg_class'), c.relpersistence = 'u', c.relkind = 'p', "
        "greatest(c.reltuples, 0), pg_total_relation_size(c.oid), pg_relation_size(c.oid), "
        "coalesce((SELECT array_agg(ARRAY[CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE "
        "quote_ident(pg_get_userbyid(a.grantee)) END, a.privilege_type]) FROM "
        "aclexplode(c.relacl) a WHERE a.grantee <> c.relowner), '{}') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relnamespace = ANY(%s) "
        f"AND {_not_extension('pg_class', 'c.oid')} ORDER BY 2",
        (schema_oids,),
    )
    oids = [row[0] for row in tables]
    columns = _group(
        _rows(
            conn,
            "SELECT a.attrelid, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), "
            "a.attnotnull, CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) "
            "END, CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' "
            "ELSE '' END, CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) "
            "END, CASE WHEN a.attcollation <> t.typcollation THEN "
            "quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END, "
            "col_description(a.attrelid, a.attnum) "
            "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "LEFT JOIN pg_collation co ON co.oid = a.attcollation "
            "LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace "
            "WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attrelid, a.attnum",
            (oids,),
        ),
        lambda row: Column(*row[1:]),
    )
    constraints = _group(
        _rows(
            conn,
            "SELECT c.conrelid, quote_ident(c.conname), c.contype, "
            "pg_get_constraintdef(c.oid), c.convalidated, "
            "coalesce((SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum) FROM "
            "pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)), '{}'), "
            "CASE WHEN c.confrelid <> 0 THEN (SELECT quote_ident(fn.nspname) || '.' || "
            "quote_ident(f.relname) FROM pg_class f JOIN pg_namespace fn ON fn.oid = "
            "f.relnamespace WHERE f.oid = c.confrelid) END "
            "FROM pg_constraint c WHERE c.conrelid = ANY(%s) AND c.contype IN "
            "('p', 'u', 'f', 'c', 'x') AND c.conparentid = 0 ORDER BY c.conrelid, c.conname",
            (oids,),
        ),
        lambda row: Constraint(
            row[1], _CONSTRAINT_KINDS[row[2]], row[3], row[4], tuple(row[5]), row[6]
        ),
    )
    indexes = _group(_index_rows(conn, oids), _index)
    return tuple(
        Table(
            name=name,
            columns=tuple(columns.get(oid, ())),
            constraints=tuple(constraints.get(oid, ())),
            indexes=tuple(indexes.get(oid, ())),
            comment=comment,
            unlogged=unlogged,
            partitioned=partitioned,
            rows=float(rows),
            bytes=int(total),
            table_bytes=int(table_bytes),
            privileges=frozenset((grantee, privilege) for grantee, privilege in acl),
        )
        for oid, name, comment, unlogged, partitioned, rows, total, table_bytes, acl in tables
    )


def _index_rows(conn: Connection, relation_oids: list[int]) -> list[tuple[Any, ...]]:
    return _rows(
        conn,
        "SELECT i.indrelid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
        "quote_ident(tn.nspname) || '.' || quote_ident(t.relname), "
        "pg_get_indexdef(i.indexrelid), i.indisunique, i.indisvalid, "
        "coalesce((SELECT array_agg(DISTINCT quote_ident(a.attname)) FROM pg_depend d "
        "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND "
        "d.refobjid = i.indrelid AND d.refobjsubid > 0), '{}'), "
        "(SELECT quote_ident(co.conname) FROM pg_constraint co WHERE co.conindid = "
        "i.indexrelid AND co.conrelid = i.indrelid AND co.contype IN ('p', 'u', 'x')), "
        "pg_relation_size(i.indexrelid) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "WHERE i.indrelid = ANY(%s) ORDER BY i.indrelid, 2",
        (relation_oids,),
    )


def _index(row: tuple[Any, ...]) -> Index:
    _, name, table, definition, unique, valid, columns, constraint, size = row
    return Index(name, table, definition, unique, valid, tuple(columns), constraint, size)


def _views(conn: Connection, schema_oids: list[int]) -> tuple[View, ...]:
    rows = _rows(
        conn,
        "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
        "pg_get_viewdef(c.oid), c.relkind = 'm', obj_description(c.oid, 'pg_class'), "
        "coalesce((SELECT array_agg(ARRAY[quote_ident(a.attname), "
        "format_type(a.atttypid, a.atttypmod)] ORDER BY a.attnum) FROM pg_attribute a "
        "WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('v', 'm') AND c.relnamespace = ANY(%s) "
        f"AND {_not_extension('pg_class', 'c.oid')} ORDER BY 2",
        (schema_oids,),
    )
    oids = [row[0] for row in rows]
    reads = _group(
        _rows(
            conn,
            "SELECT DISTINCT r.ev_class, quote_ident(n.nspname) || '.' || quote_ident(t.relname), "
            "CASE WHEN d.refobjsubid > 0 THEN (SELECT quote_ident(a.attname) FROM pg_attribute "
            "a WHERE a.attrelid = t.oid AND a.attnum = d.refobjsubid) END "
            "FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass "
            "AND r.ev_class = ANY(%s) AND d.refobjid <> r.ev_class ORDER BY 1, 2, 3",
            (oids,),
        ),
        lambda row: (row[1], row[2]),
    )
    indexes = _group(_index_rows(conn, oids), _index)
    views: list[View] = []
    for oid, name, definition, materialized, comment, columns in rows:
        read = reads.get(oid, [])
        views.append(
            View(
                name=name,
                definition=definition,
                materialized=materialized,
                columns=tuple((column, kind) for column, kind in columns),
                reads=tuple(dict.fromkeys(table for table, _ in read)),
                reads_columns=tuple((table, column) for table, column in read if column),
                comment=comment,
                indexes=tuple(indexes.get(oid, ())),
            )
        )
    return tuple(views)


def _group(rows: Iterable[tuple[Any, ...]], make: Any) -> dict[Any, list[Any]]:
    grouped: dict[Any, list[Any]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(make(row))
    return grouped


# ---------------------------------------------------------------------------------- names


def split_name(qualified: str) -> tuple[str, str]:
    """`schema.name` (each part as quoted by the server) -> (schema, name)."""
    schema, _, name = _split_quoted(qualified)
    return schema, name


def _split_quoted(text: str) -> tuple[str, str, str]:
    in_quotes = False
    for index, char in enumerate(text):
        if char == '"':
            in_quotes = not in_quotes
        elif char == "." and not in_quotes:
            return text[:index], ".", text[index + 1 :]
    return "", "", text


def unquote(name: str) -> str:
    """A server-quoted identifier as PostgreSQL stores it."""
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name
