"""Table-driven specification of the migration lint.

Each case lists the exact findings, as (rule, line) pairs, that a migration must produce: an
extra finding or a missing one fails the case. Unless a case says otherwise it runs with the
default configuration minus the opt-in `require-table-schema` rule (so short unqualified
names stay readable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from lockstep.lint import RULES, LintConfig, LintResult, lint_set, lint_sql

BASE = LintConfig(ignore=frozenset({"require-table-schema"}))
OLD_PG = LintConfig(pg_version=(10, 0), ignore=frozenset({"require-table-schema"}))
NO_RUNNER_TX = LintConfig(
    runner_manages_transactions=False, ignore=frozenset({"require-table-schema"})
)
NO_RUNNER_TIMEOUTS = LintConfig(
    runner_sets_timeouts=False, ignore=frozenset({"require-table-schema"})
)


def version(major: int, minor: int = 0) -> LintConfig:
    return LintConfig(pg_version=(major, minor), ignore=frozenset({"require-table-schema"}))


@dataclass(frozen=True)
class Case:
    id: str
    sql: str
    expected: list[tuple[str, int]]
    config: LintConfig = field(default=BASE)


def found(result: LintResult) -> list[tuple[str, int]]:
    return sorted((finding.rule, finding.line) for finding in result.findings)


CASES: list[Case] = [
    # ------------------------------------------------------------ adding columns
    Case(
        "volatile default rewrites",
        "ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        [("adding-field-with-default", 1)],
    ),
    Case(
        "clock_timestamp default rewrites",
        "ALTER TABLE accounts ADD COLUMN seen timestamptz DEFAULT clock_timestamp();",
        [("adding-field-with-default", 1)],
    ),
    Case(
        "unknown function default is assumed volatile",
        "ALTER TABLE accounts ADD COLUMN code text DEFAULT make_code();",
        [("adding-field-with-default", 1)],
    ),
    Case(
        "nextval default rewrites",
        "ALTER TABLE accounts ADD COLUMN n bigint DEFAULT nextval('accounts_n_seq');",
        [("adding-field-with-default", 1)],
    ),
    Case(
        "constant default is metadata-only on 11+",
        "ALTER TABLE accounts ADD COLUMN score bigint DEFAULT 0;",
        [],
    ),
    Case(
        "constant default rewrites before 11",
        "ALTER TABLE accounts ADD COLUMN score bigint DEFAULT 0;",
        [("adding-field-with-default", 1)],
        OLD_PG,
    ),
    Case(
        "NULL default never rewrites",
        "ALTER TABLE accounts ADD COLUMN note text DEFAULT NULL;",
        [],
        OLD_PG,
    ),
    Case(
        "stable and cast defaults are safe",
        "ALTER TABLE accounts ADD COLUMN created timestamptz NOT NULL DEFAULT now(),\n"
        "  ADD COLUMN day date DEFAULT CURRENT_DATE,\n"
        "  ADD COLUMN meta jsonb DEFAULT '{}'::jsonb,\n"
        "  ADD COLUMN price numeric(10, 2) DEFAULT '1.50'::numeric(10, 2);",
        [],
    ),
    Case(
        "stored generated column rewrites",
        "ALTER TABLE accounts ADD COLUMN total bigint GENERATED ALWAYS AS (a + b) STORED;",
        [("adding-generated-stored-column", 1)],
    ),
    Case(
        "generated column in a new table is fine",
        "CREATE TABLE totals (a bigint, b bigint,\n"
        "  total bigint GENERATED ALWAYS AS (a + b) STORED);",
        [],
    ),
    Case(
        "identity column added to an existing table rewrites",
        "ALTER TABLE accounts ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;",
        [("adding-auto-increment-column", 1)],
    ),
    Case(
        "bigserial column added to an existing table rewrites",
        "ALTER TABLE accounts ADD COLUMN seq bigserial;",
        [("adding-auto-increment-column", 1), ("prefer-identity", 1)],
    ),
    Case(
        "NOT NULL without default",
        "ALTER TABLE accounts ADD COLUMN email text NOT NULL;",
        [("adding-required-field", 1)],
    ),
    Case(
        "NOT NULL with a constant default is safe",
        "ALTER TABLE accounts ADD COLUMN email text NOT NULL DEFAULT '';",
        [],
    ),
    Case(
        "inline primary key, unique, references and check on a new column",
        "ALTER TABLE accounts ADD COLUMN a bigint PRIMARY KEY;\n"
        "ALTER TABLE accounts ADD COLUMN b text UNIQUE;\n"
        "ALTER TABLE accounts ADD COLUMN c bigint REFERENCES orgs (id);\n"
        "ALTER TABLE accounts ADD COLUMN d bigint CHECK (d > 0);",
        [
            ("adding-serial-primary-key-field", 1),
            ("disallowed-unique-constraint", 2),
            ("adding-foreign-key-constraint", 3),
            ("constraint-missing-not-valid", 4),
        ],
    ),
    Case(
        "referential actions are not column defaults",
        "ALTER TABLE orders ADD COLUMN user_id bigint\n"
        "  REFERENCES users (id) ON DELETE SET DEFAULT ON UPDATE SET NULL;",
        [("adding-foreign-key-constraint", 2)],
        OLD_PG,
    ),
    # ------------------------------------------------------------ NOT NULL
    Case(
        "SET NOT NULL scans",
        "ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
        [("adding-not-nullable-field", 1)],
    ),
    Case(
        "SET NOT NULL after a validated check, separate transactions",
        "ALTER TABLE accounts ADD CONSTRAINT accounts_email_nn\n"
        "  CHECK (email IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_email_nn;\n"
        "ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
        [("prefer-robust-stmts", 1)],
        NO_RUNNER_TX,
    ),
    Case(
        "SET NOT NULL after a validated check, one transaction: the validate is flagged",
        "ALTER TABLE accounts ADD CONSTRAINT accounts_email_nn\n"
        "  CHECK (email IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_email_nn;\n"
        "ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
        [("constraint-missing-not-valid", 3)],
    ),
    Case(
        "validated check does not help SET NOT NULL before 12",
        "ALTER TABLE accounts ADD CONSTRAINT accounts_email_nn\n"
        "  CHECK (email IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_email_nn;\n"
        "ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
        [("adding-not-nullable-field", 4), ("prefer-robust-stmts", 1)],
        LintConfig(
            pg_version=(11, 0),
            runner_manages_transactions=False,
            ignore=frozenset({"require-table-schema"}),
        ),
    ),
    Case(
        "check on another column does not prove NOT NULL",
        "ALTER TABLE accounts ADD CONSTRAINT accounts_name_nn\n"
        "  CHECK (name IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_name_nn;\n"
        "ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;",
        [("adding-not-nullable-field", 4), ("prefer-robust-stmts", 1)],
        NO_RUNNER_TX,
    ),
    Case(
        "DROP NOT NULL",
        "ALTER TABLE accounts ALTER COLUMN email DROP NOT NULL;",
        [("ban-drop-not-null", 1)],
    ),
    # ------------------------------------------------------------ constraints
    Case(
        "foreign key without NOT VALID",
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk\n"
        "  FOREIGN KEY (user_id) REFERENCES users (id);",
        [("adding-foreign-key-constraint", 2)],
    ),
    Case(
        "foreign key NOT VALID is safe",
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk\n"
        "  FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
        [],
    ),
    Case(
        "foreign key NOT VALID then VALIDATE in one migration",
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk\n"
        "  FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;",
        [("constraint-missing-not-valid", 3)],
    ),
    Case(
        "VALIDATE alone (constraint from an earlier migration) is safe",
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;",
        [],
    ),
    Case(
        "check without NOT VALID",
        "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total > 0);",
        [("constraint-missing-not-valid", 1)],
    ),
    Case(
        "check NOT VALID is safe",
        "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total > 0) NOT VALID;",
        [],
    ),
    Case(
        "unique constraint",
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
        [("disallowed-unique-constraint", 1)],
    ),
    Case(
        "unique constraint using an index built concurrently, in one file",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email);\n"
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;",
        [("mixed-transaction-modes", 1), ("unique-on-existing-rows", 1)],
    ),
    Case(
        "unique constraint using an index built concurrently in an earlier migration",
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;",
        [],
    ),
    Case(
        "session settings may precede a concurrent build; they still change timeouts",
        "SET statement_timeout = '1h';\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);",
        [("ban-timeout-change", 1)],
    ),
    Case(
        "primary key",
        "ALTER TABLE events ADD PRIMARY KEY (id);",
        [("adding-serial-primary-key-field", 1)],
    ),
    Case(
        "primary key using an index",
        "ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_id_idx;",
        [],
    ),
    Case(
        "exclusion constraint",
        "ALTER TABLE bookings ADD CONSTRAINT no_overlap\n"
        "  EXCLUDE USING gist (room WITH =, during WITH &&);",
        [("adding-exclusion-constraint", 2)],
    ),
    Case(
        "constraints of a table created in the same migration",
        "CREATE TABLE bookings (id bigint, room bigint, during tstzrange, owner bigint);\n"
        "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&);\n"
        "ALTER TABLE bookings ADD CONSTRAINT owner_fk FOREIGN KEY (owner) REFERENCES users (id);\n"
        "ALTER TABLE bookings ADD PRIMARY KEY (id);\n"
        "ALTER TABLE bookings ADD CONSTRAINT room_positive CHECK (room > 0);",
        [],
    ),
    # ------------------------------------------------------------ changing columns
    Case(
        "type change rewrites",
        "ALTER TABLE orders ALTER COLUMN total TYPE bigint;",
        [("changing-column-type", 1)],
    ),
    Case(
        "type change with USING",
        "ALTER TABLE orders ALTER COLUMN total SET DATA TYPE bigint USING total::bigint;",
        [("changing-column-type", 1)],
    ),
    Case(
        "varchar limit increase on a known column is safe",
        "ALTER TABLE users ADD COLUMN nick varchar(50);\n"
        "ALTER TABLE users ALTER COLUMN nick TYPE varchar(100);",
        [("prefer-text-field", 1), ("prefer-text-field", 2)],
    ),
    Case(
        "varchar to text on a known column is safe",
        "ALTER TABLE users ADD COLUMN nick varchar(50);\n"
        "ALTER TABLE users ALTER COLUMN nick TYPE text;",
        [("prefer-text-field", 1)],
    ),
    Case(
        "varchar limit decrease rewrites",
        "ALTER TABLE users ADD COLUMN nick varchar(50);\n"
        "ALTER TABLE users ALTER COLUMN nick TYPE varchar(20);",
        [("changing-column-type", 2), ("prefer-text-field", 1), ("prefer-text-field", 2)],
    ),
    Case(
        "numeric precision increase at the same scale is safe",
        "ALTER TABLE orders ADD COLUMN price numeric(10, 2);\n"
        "ALTER TABLE orders ALTER COLUMN price TYPE numeric(12, 2);",
        [],
    ),
    Case(
        "numeric scale change rewrites",
        "ALTER TABLE orders ADD COLUMN price numeric(10, 2);\n"
        "ALTER TABLE orders ALTER COLUMN price TYPE numeric(12, 3);",
        [("changing-column-type", 2)],
    ),
    Case(
        "cidr to inet and timestamptz precision increase are safe",
        "ALTER TABLE hosts ADD COLUMN net cidr, ADD COLUMN seen timestamptz(3);\n"
        "ALTER TABLE hosts ALTER COLUMN net TYPE inet, ALTER COLUMN seen TYPE timestamptz(6);",
        [],
    ),
    Case(
        "type change and SET NOT NULL in one statement",
        "ALTER TABLE users ALTER COLUMN name TYPE text, ALTER COLUMN name SET NOT NULL;",
        [
            ("adding-not-nullable-field", 1),
            ("changing-column-type", 1),
            ("changing-column-type-with-not-null", 1),
        ],
    ),
    Case(
        "type change of a column with a CHECK re-checks rows",
        "ALTER TABLE users ADD COLUMN nick varchar(10) CHECK (nick <> '');\n"
        "ALTER TABLE users ALTER COLUMN nick TYPE varchar(20);",
        [
            ("changing-column-type-with-check", 2),
            ("constraint-missing-not-valid", 1),
            ("prefer-text-field", 1),
            ("prefer-text-field", 2),
        ],
    ),
    Case(
        "SET TABLESPACE rewrites",
        "ALTER TABLE events SET TABLESPACE fast_disk;",
        [("table-rewrite", 1)],
    ),
    Case(
        "SET (fillfactor) does not rewrite",
        "ALTER TABLE events SET (fillfactor = 70);",
        [],
    ),
    # ------------------------------------------------------------ breaking changes
    Case("drop column", "ALTER TABLE users DROP COLUMN legacy;", [("ban-drop-column", 1)]),
    Case(
        "drop column of a new table",
        "CREATE TABLE scratch (id bigint, tmp text);\nALTER TABLE scratch DROP COLUMN tmp;",
        [],
    ),
    Case("drop table", "DROP TABLE IF EXISTS legacy_users;", [("ban-drop-table", 1)]),
    Case(
        "drop a table created in the same migration",
        "CREATE TABLE scratch (id bigint);\nDROP TABLE scratch;",
        [],
    ),
    Case("drop schema", "DROP SCHEMA IF EXISTS archive CASCADE;", [("ban-drop-schema", 1)]),
    Case(
        "drop database",
        "DROP DATABASE IF EXISTS analytics;",
        [("ban-drop-database", 1)],
    ),
    Case(
        "truncate cascade",
        "TRUNCATE audit_log CASCADE;",
        [("ban-truncate", 1), ("ban-truncate-cascade", 1)],
    ),
    Case("truncate without cascade", "TRUNCATE audit_log;", [("ban-truncate", 1)]),
    Case("truncate of a table the file creates", "CREATE TABLE t (id bigint);\nTRUNCATE t;", []),
    Case(
        "revoke breaks the running version",
        "REVOKE SELECT ON public.users FROM app_reader;",
        [("ban-revoke", 1)],
    ),
    Case("grant is additive", "GRANT SELECT ON public.users TO app_reader;", []),
    Case(
        "explicit table lock",
        "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;\nALTER TABLE users ADD COLUMN a text;",
        [("explicit-table-lock", 1)],
    ),
    Case(
        "lock on a table the file creates",
        "CREATE TABLE t (id bigint);\nLOCK TABLE t;",
        [],
    ),
    Case(
        "rename column",
        "ALTER TABLE users RENAME COLUMN name TO full_name;",
        [("renaming-column", 1)],
    ),
    Case("rename table", "ALTER TABLE users RENAME TO members;", [("renaming-table", 1)]),
    Case("move table to a schema", "ALTER TABLE users SET SCHEMA app;", [("renaming-table", 1)]),
    Case(
        "rename in a new table",
        "CREATE TABLE scratch (id bigint, a text);\n"
        "ALTER TABLE scratch RENAME COLUMN a TO b;\n"
        "ALTER TABLE scratch RENAME TO scratch2;",
        [],
    ),
    Case("rename schema", "ALTER SCHEMA app RENAME TO application;", [("renaming-schema", 1)]),
    Case(
        "rename enum value",
        "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy';",
        [("renaming-enum-value", 1)],
    ),
    # ------------------------------------------------------------ indexes
    Case(
        "index without CONCURRENTLY",
        "CREATE INDEX users_email_idx ON users (email);",
        [("require-concurrent-index-creation", 1)],
    ),
    Case(
        "index CONCURRENTLY IF NOT EXISTS",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);",
        [],
    ),
    Case(
        "index on a table created in the same migration",
        "CREATE TABLE tags (id bigint, name text);\nCREATE INDEX tags_name_idx ON tags (name);",
        [],
    ),
    Case(
        "concurrent index without IF NOT EXISTS is not retry-safe",
        "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);",
        [("prefer-robust-stmts", 1)],
    ),
    Case(
        "unnamed concurrent index is not retry-safe",
        "CREATE INDEX CONCURRENTLY ON users (email);",
        [("prefer-robust-stmts", 1)],
    ),
    Case(
        "non-unique index on more than three columns",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS wide_idx ON events (a, b, c, d);",
        [("index-too-many-columns", 1)],
    ),
    Case(
        "unique index on four columns is fine, but may meet duplicates",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS wide_key ON events (a, b, c, d);",
        [("unique-on-existing-rows", 1)],
    ),
    Case(
        "unique index on a new table",
        "CREATE TABLE tags (id bigint, name text);\n"
        "CREATE UNIQUE INDEX tags_name_key ON tags (name);",
        [],
    ),
    Case(
        "concurrent index build on 14.0-14.3",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);",
        [("index-corruption-pg14", 1)],
        version(14, 2),
    ),
    Case(
        "concurrent index build on 14.4",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);",
        [],
        version(14, 4),
    ),
    Case(
        "drop index without CONCURRENTLY",
        "DROP INDEX users_email_idx;",
        [("require-concurrent-index-deletion", 1)],
    ),
    Case(
        "drop index CONCURRENTLY IF EXISTS",
        "DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;",
        [],
    ),
    Case(
        "drop index CONCURRENTLY without IF EXISTS",
        "DROP INDEX CONCURRENTLY users_email_idx;",
        [("prefer-robust-stmts", 1)],
    ),
    Case("reindex", "REINDEX INDEX users_email_idx;", [("require-concurrent-reindex", 1)]),
    Case("reindex concurrently", "REINDEX INDEX CONCURRENTLY users_email_idx;", []),
    Case(
        "reindex concurrently before 12",
        "REINDEX INDEX CONCURRENTLY users_email_idx;",
        [("requires-newer-postgres", 1)],
        version(11),
    ),
    Case(
        "detach partition",
        "ALTER TABLE measurements DETACH PARTITION measurements_2020;",
        [("require-concurrent-partition-detach", 1)],
    ),
    Case(
        "detach partition concurrently",
        "ALTER TABLE measurements DETACH PARTITION measurements_2020 CONCURRENTLY;",
        [],
    ),
    Case(
        "detach partition concurrently before 14",
        "ALTER TABLE measurements DETACH PARTITION measurements_2020 CONCURRENTLY;",
        [("requires-newer-postgres", 1)],
        version(13),
    ),
    # ------------------------------------------------------------ data changes
    Case(
        "update without WHERE",
        "UPDATE users SET active = true;",
        [("backfill-without-batching", 1)],
    ),
    Case("update with WHERE", "UPDATE users SET active = true WHERE id < 1000;", []),
    Case("delete without WHERE", "DELETE FROM sessions;", [("backfill-without-batching", 1)]),
    Case(
        "update in the same transaction as DDL on the table",
        "ALTER TABLE users ADD COLUMN active boolean;\n"
        "UPDATE users SET active = true WHERE id < 1000;",
        [("backfill-in-ddl-transaction", 2)],
    ),
    Case(
        "update and DDL in separate transactions",
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS active boolean;\n"
        "UPDATE users SET active = true WHERE id < 1000;",
        [],
        NO_RUNNER_TX,
    ),
    Case(
        "update of another table than the DDL",
        "ALTER TABLE users ADD COLUMN active boolean;\n"
        "UPDATE orders SET state = 'x' WHERE id < 1000;",
        [],
    ),
    Case(
        "seed rows into a new table",
        "CREATE TABLE plans (id bigint, name text);\n"
        "INSERT INTO plans (id, name) VALUES (1, 'free');\n"
        "UPDATE plans SET name = 'basic';",
        [],
    ),
    Case(
        "duplicate assignments",
        "UPDATE users SET name = 'a', name = 'b' WHERE id = 1;\n"
        "INSERT INTO users (id, id) VALUES (1, 2);\n"
        "CREATE TABLE twice (id bigint, id text);\n"
        "ALTER TABLE profiles ADD COLUMN nick text, ADD COLUMN nick text;",
        [
            ("ban-duplicate-column-assignments", 1),
            ("ban-duplicate-column-assignments", 2),
            ("ban-duplicate-column-assignments", 3),
            ("ban-duplicate-column-assignments", 4),
        ],
    ),
    # ------------------------------------------------------------ types and style
    Case(
        "column type style rules",
        "CREATE TABLE profiles (\n"
        "  id serial,\n"
        "  age smallint,\n"
        "  code char(3),\n"
        "  nick varchar(40),\n"
        "  born timestamp,\n"
        "  prefs json,\n"
        "  visits integer\n"
        ");",
        [
            ("ban-char-field", 4),
            ("prefer-bigint-over-int", 2),
            ("prefer-bigint-over-int", 8),
            ("prefer-bigint-over-smallint", 3),
            ("prefer-identity", 2),
            ("prefer-jsonb", 7),
            ("prefer-text-field", 5),
            ("prefer-timestamptz", 6),
        ],
    ),
    Case(
        "preferred column types",
        "CREATE TABLE profiles (\n"
        "  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        '  code text, nick varchar, born timestamptz, prefs jsonb, flag "char"\n'
        ");",
        [],
    ),
    Case(
        "identifier longer than 63 bytes",
        f"CREATE TABLE {'t' * 64} (id bigint);",
        [("identifier-too-long", 1)],
    ),
    Case("identifier of 63 bytes", f"CREATE TABLE {'t' * 63} (id bigint);", []),
    # ------------------------------------------------------------ domains and enums
    Case(
        "alter domain add constraint",
        "ALTER DOMAIN positive ADD CONSTRAINT positive_check CHECK (VALUE > 0);",
        [("ban-alter-domain-with-add-constraint", 1)],
    ),
    Case(
        "alter domain add constraint NOT VALID",
        "ALTER DOMAIN positive ADD CONSTRAINT positive_check CHECK (VALUE > 0) NOT VALID;",
        [],
    ),
    Case(
        "create domain with a check",
        "CREATE DOMAIN positive AS bigint CHECK (VALUE > 0);",
        [("ban-create-domain-with-constraint", 1)],
    ),
    Case("create domain without a check", "CREATE DOMAIN email AS text;", []),
    Case(
        "enum value without position",
        "ALTER TYPE mood ADD VALUE 'meh';",
        [("require-enum-value-ordering", 1)],
    ),
    Case(
        "enum value with position",
        "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok';",
        [],
    ),
    Case(
        "enum value before 12 runs outside the transaction and must be robust",
        "ALTER TYPE mood ADD VALUE 'meh' AFTER 'ok';",
        [("prefer-robust-stmts", 1)],
        version(11),
    ),
    # ------------------------------------------------------------ maintenance
    Case("vacuum full", "VACUUM FULL events;", [("prefer-repack", 1)]),
    Case("vacuum full option", "VACUUM (FULL, ANALYZE) events;", [("prefer-repack", 1)]),
    Case("plain vacuum", "VACUUM (ANALYZE) events;", []),
    Case("cluster", "CLUSTER events USING events_pkey;", [("prefer-repack", 1)]),
    # ------------------------------------------------------------ transactions
    Case(
        "explicit transaction when the runner manages it",
        "BEGIN;\nALTER TABLE users ADD COLUMN a text;\nCOMMIT;",
        [("transaction-nesting", 1), ("transaction-nesting", 3)],
    ),
    Case(
        "explicit transaction without a commit when the runner manages it",
        "BEGIN;\nALTER TABLE users ADD COLUMN a text;",
        [("ban-uncommitted-transaction", 1), ("transaction-nesting", 1)],
    ),
    Case(
        "own transaction without the runner",
        "BEGIN;\nALTER TABLE users ADD COLUMN a text;\nCOMMIT;",
        [],
        NO_RUNNER_TX,
    ),
    Case(
        "uncommitted transaction",
        "START TRANSACTION;\nALTER TABLE users ADD COLUMN a text;",
        [("ban-uncommitted-transaction", 1)],
        NO_RUNNER_TX,
    ),
    Case(
        "nested BEGIN and stray COMMIT",
        "BEGIN;\nBEGIN;\nCOMMIT;\nCOMMIT;",
        [("transaction-nesting", 2), ("transaction-nesting", 4)],
        NO_RUNNER_TX,
    ),
    Case(
        "concurrent index inside the file's own transaction",
        "BEGIN;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n"
        "COMMIT;",
        [("ban-concurrent-index-creation-in-transaction", 2)],
        NO_RUNNER_TX,
    ),
    Case(
        "VACUUM inside the file's own transaction",
        "BEGIN;\nVACUUM events;\nCOMMIT;",
        [("non-transactional-in-transaction", 2)],
        NO_RUNNER_TX,
    ),
    Case(
        "statements outside any transaction need IF NOT EXISTS without the runner",
        "CREATE TABLE tags (id bigint);\n"
        "CREATE TABLE IF NOT EXISTS labels (id bigint);\n"
        "ALTER TABLE users ADD COLUMN IF NOT EXISTS nick text;\n"
        "ALTER TABLE users ADD COLUMN bio text;",
        [("prefer-robust-stmts", 1), ("prefer-robust-stmts", 4)],
        NO_RUNNER_TX,
    ),
    # ------------------------------------------------------------ timeouts
    Case(
        "timeouts are the runner's by default",
        "ALTER TABLE users ADD COLUMN nick text;",
        [],
    ),
    Case(
        "no timeouts set",
        "ALTER TABLE users ADD COLUMN nick text;\nALTER TABLE users ADD COLUMN bio text;",
        [("require-lock-timeout", 1), ("require-statement-timeout", 1)],
        NO_RUNNER_TIMEOUTS,
    ),
    Case(
        "timeouts set first",
        "SET lock_timeout = '2s';\n"
        "SET statement_timeout TO '5min';\n"
        "ALTER TABLE users ADD COLUMN nick text;",
        [],
        NO_RUNNER_TIMEOUTS,
    ),
    Case(
        "changing a timeout the runner set",
        "SET lock_timeout = '30s';\n"
        "SET LOCAL statement_timeout = 0;\n"
        "RESET ALL;\n"
        "SELECT set_config('lock_timeout', '0', false);\n"
        "SET search_path = app;\n"
        "ALTER TABLE users ADD COLUMN nick text;",
        [
            ("ban-timeout-change", 1),
            ("ban-timeout-change", 2),
            ("ban-timeout-change", 3),
            ("ban-timeout-change", 4),
        ],
    ),
    Case(
        "a timeout change after review",
        "-- lockstep-ignore: ban-timeout-change -- this backfill needs longer\n"
        "SET statement_timeout = '30min';\n"
        "ALTER TABLE users ADD COLUMN nick text;",
        [],
    ),
    Case(
        "a transactional statement beside a concurrent index build",
        "ALTER TABLE users ADD COLUMN email text;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);",
        [("mixed-transaction-modes", 2)],
    ),
    Case(
        "only statements that run outside a transaction",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n"
        "DROP INDEX CONCURRENTLY IF EXISTS users_old_idx;",
        [],
    ),
    Case(
        "a zero timeout does not count",
        "SET lock_timeout = 0;\n"
        "SET statement_timeout = '1h';\n"
        "ALTER TABLE users ADD COLUMN nick text;",
        [("require-lock-timeout", 3)],
        NO_RUNNER_TIMEOUTS,
    ),
    Case(
        "new tables and plain reads need no timeout",
        "CREATE TABLE tags (id bigint);\nCREATE INDEX tags_id_idx ON tags (id);\nSELECT 1;",
        [],
        NO_RUNNER_TIMEOUTS,
    ),
    # ------------------------------------------------------------ the lint itself
    Case("not a statement", "SELEC 1;", [("syntax-error", 1)]),
    Case(
        "unterminated string",
        "ALTER TABLE users ADD COLUMN a text;\nSELECT 'oops;\n",
        [("syntax-error", 2)],
    ),
    Case(
        "parse error in CREATE TABLE",
        "CREATE TABLE t (\n  id bigint DEFAULT,\n  name text\n);",
        [("syntax-error", 2)],
    ),
    Case(
        "parse error ignored after review: checked from tokens",
        "-- lockstep-ignore: syntax-error\nCREATE TABLE t (id bigint DEFAULT, name varchar(9));",
        [("prefer-text-field", 2)],
    ),
    Case(
        "valid PostgreSQL that sqlglot lacks is not a syntax error",
        "CREATE TABLE t (a bigint NOT NULL CONSTRAINT c CHECK (a > 0) NO INHERIT);\n"
        "INSERT INTO t OVERRIDING SYSTEM VALUE VALUES (1);\n"
        "DROP TYPE IF EXISTS a, b;\n"
        "COMMENT ON TABLE users IS NULL;\n"
        "CREATE INDEX IF NOT EXISTS t_a_idx ON ONLY t (a);\n"
        "UPDATE users SET a = 1;",
        [("backfill-without-batching", 6)],
    ),
    Case("drop index concurrently with a list", "DROP INDEX CONCURRENTLY IF EXISTS i1;", []),
    Case(
        "DO block",
        "DO $$ BEGIN UPDATE users SET a = 1; END $$;",
        [("unrecognized-statement", 1)],
    ),
    Case(
        "unknown ALTER TABLE action: PostgreSQL's parser rejects it",
        "ALTER TABLE users FROBNICATE everything;",
        [("syntax-error", 1)],
    ),
    Case(
        "unknown ALTER TABLE action let through after review is still not passed",
        "-- lockstep-ignore: syntax-error\nALTER TABLE users FROBNICATE everything;",
        [("unrecognized-statement", 2)],
    ),
    Case(
        "RENAME combined with other ALTER TABLE actions is not PostgreSQL",
        "ALTER TABLE users DROP COLUMN legacy, RENAME COLUMN a TO b;",
        [("syntax-error", 1)],
    ),
    Case(
        "byte-order mark and CRLF line ends",
        "\ufeffALTER TABLE users DROP COLUMN a;\r\nALTER TABLE users DROP COLUMN b;\r\n",
        [("ban-drop-column", 1), ("ban-drop-column", 2)],
    ),
    Case(
        "phase override on a breaking file",
        "-- lockstep:phase=expand\nALTER TABLE users DROP COLUMN legacy;",
        [("ban-drop-column", 2), ("phase-override-unsafe", 1)],
    ),
    # ------------------------------------------------------------ ignore comments
    Case(
        "ignore the next statement",
        "-- lockstep-ignore: ban-drop-column\n"
        "ALTER TABLE users DROP COLUMN legacy;\n"
        "ALTER TABLE users DROP COLUMN other;",
        [("ban-drop-column", 3)],
    ),
    Case(
        "squawk spelling",
        "-- squawk-ignore ban-drop-column,changing-column-type\n"
        "ALTER TABLE users DROP COLUMN legacy, ALTER COLUMN a TYPE bigint;",
        [],
    ),
    Case(
        "ignore the whole file",
        "-- lockstep-ignore-file: ban-drop-column\n"
        "ALTER TABLE users DROP COLUMN legacy;\n"
        "ALTER TABLE users DROP COLUMN other;",
        [],
    ),
    Case(
        "ignore inside a statement covers that statement",
        "ALTER TABLE users\n"
        "  -- lockstep-ignore: ban-drop-column\n"
        "  DROP COLUMN legacy;\n"
        "ALTER TABLE users DROP COLUMN other;",
        [("ban-drop-column", 4)],
    ),
    Case(
        "ignore with a reason",
        "-- lockstep-ignore: ban-drop-table -- archived in ticket-less cleanup\n"
        "DROP TABLE old_audit;",
        [],
    ),
    Case(
        "ignore without rule ids covers every rule",
        "-- lockstep-ignore\nALTER TABLE users DROP COLUMN legacy, RENAME COLUMN a TO b;",
        [],
    ),
    Case(
        "unused ignore",
        "-- lockstep-ignore: ban-drop-table\nALTER TABLE users ADD COLUMN nick text;",
        [("unused-ignore", 1)],
    ),
    Case(
        "ignore naming an unknown rule",
        "-- lockstep-ignore: no-such-rule\nALTER TABLE users ADD COLUMN nick text;",
        [("unused-ignore", 1)],
    ),
    Case(
        "ignore with no statement after it",
        "ALTER TABLE users ADD COLUMN nick text;\n-- lockstep-ignore: ban-drop-table\n",
        [("unused-ignore", 2)],
    ),
    Case(
        "partly used ignore",
        "-- lockstep-ignore: ban-drop-column, renaming-column\n"
        "ALTER TABLE users DROP COLUMN legacy;",
        [("unused-ignore", 1)],
    ),
    Case(
        "semicolons inside strings, dollar quotes, identifiers and comments",
        "CREATE FUNCTION f() RETURNS trigger AS $body$\n"
        "BEGIN NEW.a := 'x;y'; RETURN NEW; END $body$ LANGUAGE plpgsql;\n"
        "COMMENT ON TABLE users IS 'a; b'; /* c; d */ ALTER TABLE \"we;ird\" DROP COLUMN x;",
        [("ban-drop-column", 3)],
    ),
    # ------------------------------------------------------------ configuration
    Case(
        "raise a warning rule to error, opt in to require-table-schema",
        "CREATE TABLE tags (id integer);",
        [("prefer-bigint-over-int", 1), ("require-table-schema", 1)],
        LintConfig(errors=frozenset({"prefer-bigint-over-int", "require-table-schema"})),
    ),
    Case(
        "switch a rule off",
        "ALTER TABLE users DROP COLUMN legacy;",
        [],
        LintConfig(ignore=frozenset({"ban-drop-column", "require-table-schema"})),
    ),
    Case(
        "require-table-schema on by default at info level",
        "ALTER TABLE users ADD COLUMN nick text;\nALTER TABLE public.users ADD COLUMN bio text;",
        [("require-table-schema", 1)],
        LintConfig(),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case) -> None:
    assert found(lint_sql(case.sql, case.config)) == sorted(case.expected)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 80


def test_every_rule_has_a_case() -> None:
    exercised = {rule for case in CASES for rule, _ in case.expected}
    assert set(RULES) - exercised == set()


# ---------------------------------------------------------------- what each statement does


@dataclass(frozen=True)
class Facts:
    sql: str
    kind: str
    lock: str
    transactional: bool
    classes: set[str]
    rewrites: bool = False
    tables: tuple[str, ...] = ()
    concurrent_index: str | None = None
    if_not_exists: bool = False
    config: LintConfig = field(default=BASE)


FACTS: list[Facts] = [
    Facts(
        "CREATE TABLE app.users (id bigint, org bigint REFERENCES app.orgs (id))",
        "CREATE TABLE",
        "SHARE ROW EXCLUSIVE",
        True,
        {"additive"},
        tables=("app.users", "app.orgs"),
    ),
    Facts(
        'CREATE TABLE IF NOT EXISTS "Audit" (id bigint)',
        "CREATE TABLE",
        "NONE",
        True,
        {"additive"},
        tables=("Audit",),
        if_not_exists=True,
    ),
    Facts(
        "ALTER TABLE Users ADD COLUMN nick text",
        "ALTER TABLE",
        "ACCESS EXCLUSIVE",
        True,
        {"additive"},
        tables=("users",),
    ),
    Facts(
        "ALTER TABLE users ADD COLUMN n bigint DEFAULT 0",
        "ALTER TABLE",
        "ACCESS EXCLUSIVE",
        True,
        {"long-locking"},
        rewrites=True,
        tables=("users",),
        config=OLD_PG,
    ),
    Facts(
        "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid()",
        "ALTER TABLE",
        "ACCESS EXCLUSIVE",
        True,
        {"long-locking"},
        rewrites=True,
        tables=("users",),
    ),
    Facts(
        "ALTER TABLE users ADD COLUMN email text NOT NULL",
        "ALTER TABLE",
        "ACCESS EXCLUSIVE",
        True,
        {"breaking"},
        tables=("users",),
    ),
    Facts(
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        "ALTER TABLE",
        "ACCESS EXCLUSIVE",
        True,
        {"breaking", "long-locking"},
        tables=("users",),
    ),
    Facts(
        "ALTER TABLE users ALTER COLUMN code TYPE varchar(10)",
        "ALTER TABLE",
        "ACCESS EXCLUSIVE",
        True,
        {"breaking", "long-locking", "data-losing"},
        rewrites=True,
        tables=("users",),
    ),
    Facts(
        "ALTER TABLE users DROP COLUMN legacy",
        "ALTER TABLE",
        "ACCESS EXCLUSIVE",
        True,
        {"breaking", "data-losing"},
        tables=("users",),
    ),
    Facts(
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES public.users (id) NOT VALID",
        "ALTER TABLE",
        "SHARE ROW EXCLUSIVE",
        True,
        set(),
        tables=("orders", "public.users"),
    ),
    Facts(
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id)",
        "ALTER TABLE",
        "SHARE ROW EXCLUSIVE",
        True,
        {"long-locking"},
        tables=("orders", "users"),
    ),
    Facts(
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk",
        "ALTER TABLE",
        "SHARE UPDATE EXCLUSIVE",
        True,
        set(),
        tables=("orders",),
    ),
    Facts(
        "ALTER TABLE orders ENABLE TRIGGER orders_audit",
        "ALTER TABLE",
        "SHARE ROW EXCLUSIVE",
        True,
        set(),
        tables=("orders",),
    ),
    Facts(
        "CREATE INDEX orders_user_idx ON orders (user_id)",
        "CREATE INDEX",
        "SHARE",
        True,
        {"long-locking"},
        tables=("orders",),
    ),
    Facts(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_idx ON shop.orders (user_id)",
        "CREATE INDEX",
        "SHARE UPDATE EXCLUSIVE",
        False,
        {"additive"},
        tables=("shop.orders",),
        concurrent_index="shop.orders_user_idx",
        if_not_exists=True,
    ),
    Facts(
        "DROP INDEX CONCURRENTLY IF EXISTS orders_user_idx",
        "DROP INDEX",
        "SHARE UPDATE EXCLUSIVE",
        False,
        set(),
        if_not_exists=True,
    ),
    Facts("DROP INDEX orders_user_idx", "DROP INDEX", "ACCESS EXCLUSIVE", True, set()),
    Facts(
        "DROP TABLE legacy",
        "DROP TABLE",
        "ACCESS EXCLUSIVE",
        True,
        {"breaking", "data-losing"},
        tables=("legacy",),
    ),
    Facts(
        "TRUNCATE audit_log",
        "TRUNCATE",
        "ACCESS EXCLUSIVE",
        True,
        {"data-losing"},
        tables=("audit_log",),
    ),
    Facts(
        "UPDATE users SET a = 1 WHERE id < 10",
        "UPDATE",
        "ROW EXCLUSIVE",
        True,
        set(),
        tables=("users",),
    ),
    Facts(
        "DELETE FROM users",
        "DELETE",
        "ROW EXCLUSIVE",
        True,
        {"data-losing", "long-locking"},
        tables=("users",),
    ),
    Facts(
        "INSERT INTO plans (id) VALUES (1)",
        "INSERT",
        "ROW EXCLUSIVE",
        True,
        {"additive"},
        tables=("plans",),
    ),
    Facts("SELECT 1", "SELECT", "ACCESS SHARE", True, {"additive"}),
    Facts(
        "VACUUM events", "VACUUM", "SHARE UPDATE EXCLUSIVE", False, {"additive"}, tables=("events",)
    ),
    Facts(
        "VACUUM FULL events",
        "VACUUM",
        "ACCESS EXCLUSIVE",
        False,
        {"long-locking"},
        rewrites=True,
        tables=("events",),
    ),
    Facts("REINDEX INDEX CONCURRENTLY i", "REINDEX", "SHARE UPDATE EXCLUSIVE", False, {"additive"}),
    Facts("REINDEX SCHEMA app", "REINDEX", "ACCESS EXCLUSIVE", False, {"long-locking"}),
    Facts(
        "ALTER TABLE m DETACH PARTITION m_2020 CONCURRENTLY",
        "ALTER TABLE",
        "SHARE UPDATE EXCLUSIVE",
        False,
        set(),
        tables=("m", "m_2020"),
    ),
    Facts("ALTER TYPE mood ADD VALUE 'meh' AFTER 'ok'", "ALTER TYPE", "NONE", True, {"additive"}),
    Facts(
        "ALTER TYPE mood ADD VALUE 'meh' AFTER 'ok'",
        "ALTER TYPE",
        "NONE",
        False,
        {"additive"},
        config=version(11),
    ),
    Facts("CREATE DATABASE analytics", "CREATE DATABASE", "NONE", False, {"additive"}),
    Facts("ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM", "NONE", False, set()),
    Facts(
        "CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p",
        "CREATE SUBSCRIPTION",
        "NONE",
        False,
        {"additive"},
    ),
    Facts("LOCK TABLE users IN SHARE MODE", "LOCK", "SHARE", True, set(), tables=("users",)),
    Facts(
        "COMMENT ON TABLE users IS 'people'",
        "COMMENT",
        "SHARE UPDATE EXCLUSIVE",
        True,
        {"additive"},
        tables=("users",),
    ),
    Facts("SET lock_timeout = '2s'", "SET", "NONE", True, {"additive"}),
    Facts("BEGIN", "BEGIN", "NONE", True, {"additive"}),
    Facts("DO $$ BEGIN NULL; END $$", "DO", "ACCESS EXCLUSIVE", True, set()),
    Facts("SELEC 1", "UNPARSED", "ACCESS EXCLUSIVE", True, set()),
]


@pytest.mark.parametrize("facts", FACTS, ids=[facts.sql[:60] for facts in FACTS])
def test_statement_facts(facts: Facts) -> None:
    result = lint_sql(facts.sql, facts.config)
    [statement] = result.statements
    assert statement.kind == facts.kind
    assert statement.lock == facts.lock
    assert statement.transactional is facts.transactional
    assert statement.classes == facts.classes
    assert statement.rewrites is facts.rewrites
    assert statement.tables == facts.tables
    assert statement.concurrent_index == facts.concurrent_index
    assert statement.if_not_exists is facts.if_not_exists


def test_statement_text_and_position() -> None:
    result = lint_sql("-- add a column\n  ALTER TABLE users\n  ADD COLUMN nick text ;\nSELECT 1")
    first, second = result.statements
    assert (first.index, first.line, first.column) == (0, 2, 3)
    assert first.text == "ALTER TABLE users\n  ADD COLUMN nick text"
    assert (second.index, second.line, second.column, second.text) == (1, 4, 1, "SELECT 1")


def test_finding_points_at_the_offending_token() -> None:
    result = lint_sql("ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();", BASE)
    [finding] = result.findings
    assert (finding.line, finding.column) == (1, 49)
    assert finding.statement_index == 0
    assert "gen_random_uuid" in finding.message
    assert finding.help.startswith("ALTER TABLE users ADD COLUMN token uuid;")


@pytest.mark.parametrize(
    ("sql", "phase", "needs_backup"),
    [
        ("CREATE TABLE t (id bigint); ALTER TABLE users ADD COLUMN nick text;", "expand", False),
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (nick);", "expand", False),
        ("ALTER TABLE users ADD CONSTRAINT c CHECK (a > 0) NOT VALID;", "expand", True),
        ("ALTER TABLE users DROP COLUMN legacy;", "contract", True),
        ("ALTER TABLE users RENAME COLUMN a TO b;", "contract", True),
        ("TRUNCATE sessions;", "contract", True),
        ("UPDATE users SET plan = 'free';", "contract", True),
        ("DELETE FROM sessions WHERE expires_at < now();", "contract", True),
        ("UPDATE users SET plan = 'free' WHERE id < 1000;", "expand", True),
        ("REVOKE SELECT ON users FROM reporting;", "contract", True),
        # what the lint cannot analyse is contract until a reviewer says otherwise
        ("DO $$ BEGIN PERFORM 1; END $$;", "contract", True),
        ("EXECUTE prepared_change;", "contract", True),
        ("ALTER TABLE users FROBNICATE everything;", "contract", True),
        ("SELEC 1;", "contract", True),
        (
            "-- lockstep-ignore: unrecognized-statement\nDO $$ BEGIN PERFORM 1; END $$;",
            "expand",
            True,
        ),
        (
            "-- lockstep-ignore: syntax-error\nALTER TABLE users ADD COLUMN a text DEFAULT;",
            "expand",
            False,
        ),
        ("ALTER TABLE users ALTER COLUMN email SET NOT NULL;", "contract", True),
        ("-- lockstep:phase=contract\nALTER TABLE users ADD COLUMN nick text;", "contract", False),
        ("-- lockstep:phase=expand\nALTER TABLE users DROP COLUMN legacy;", "expand", True),
        ("", "expand", False),
    ],
)
def test_phase_and_backup(sql: str, phase: str, needs_backup: bool) -> None:
    result = lint_sql(sql)
    assert result.phase == phase
    assert result.needs_backup is needs_backup


def test_result_counts() -> None:
    result = lint_sql("CREATE INDEX i ON users (a);\nCREATE TABLE t (id integer);", BASE)
    assert (result.errors, result.warnings, result.has_errors) == (1, 1, True)
    clean = lint_sql("SELECT 1;")
    assert (clean.errors, clean.warnings, clean.has_errors) == (0, 0, False)


# ---------------------------------------------------------------- configuration


def test_severity_changes() -> None:
    sql = "CREATE INDEX i ON public.users (a);\nCREATE TABLE public.t (id integer);"
    default = {f.rule: f.severity for f in lint_sql(sql, BASE).findings}
    assert default == {
        "require-concurrent-index-creation": "error",
        "prefer-bigint-over-int": "warning",
    }
    changed = LintConfig(
        errors=frozenset({"prefer-bigint-over-int"}),
        warnings=frozenset({"require-concurrent-index-creation"}),
        ignore=frozenset({"require-table-schema"}),
    )
    swapped = {f.rule: f.severity for f in lint_sql(sql, changed).findings}
    assert swapped == {
        "require-concurrent-index-creation": "warning",
        "prefer-bigint-over-int": "error",
    }


def test_ignore_wins_over_errors() -> None:
    config = LintConfig(
        errors=frozenset({"ban-drop-column"}), ignore=frozenset({"ban-drop-column"})
    )
    assert lint_sql("ALTER TABLE public.u DROP COLUMN a;", config).findings == []


def test_squawk_aliases_in_configuration() -> None:
    config = LintConfig(runner_sets_timeouts=False, ignore=frozenset({"require-timeout-settings"}))
    assert lint_sql("ALTER TABLE public.users ADD COLUMN a text;", config).findings == []


@pytest.mark.parametrize("name", ["errors", "warnings", "ignore"])
def test_unknown_rule_ids_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown lint rule id\(s\).*no-such-rule.*other-typo"):
        LintConfig(**{name: frozenset({"no-such-rule", "other-typo", "ban-drop-table"})})


def test_bad_version_is_rejected() -> None:
    with pytest.raises(ValueError, match="pg_version"):
        LintConfig(pg_version=(15,))  # type: ignore[arg-type]


def test_lists_are_accepted_as_rule_sets() -> None:
    config = LintConfig(ignore=["ban-drop-column"])  # type: ignore[arg-type]
    assert config.ignore == frozenset({"ban-drop-column"})


def test_the_statement_cache_does_not_change_results() -> None:
    sql = "ALTER TABLE public.users ADD COLUMN score bigint DEFAULT 0;"
    old = lint_sql(sql, OLD_PG)
    new = lint_sql(sql, BASE)
    again = lint_sql(sql, OLD_PG)
    assert found(old) == found(again) == [("adding-field-with-default", 1)]
    assert found(new) == []
    assert old.statements == again.statements


def test_breaking_findings_are_warnings_in_a_contract_migration_that_lockstep_orders() -> None:
    result = lint_sql("ALTER TABLE users DROP COLUMN name;")
    assert result.phase == "contract"
    (finding,) = [f for f in result.findings if f.rule == "ban-drop-column"]
    assert finding.severity == "warning"
    assert "after the old version is gone" in finding.message
    assert not result.has_errors


def test_breaking_findings_stay_errors_when_raised_or_when_the_runner_does_not_order_contract() -> (
    None
):
    raised = lint_sql(
        "ALTER TABLE users DROP COLUMN name;", LintConfig(errors=frozenset({"ban-drop-column"}))
    )
    assert raised.has_errors
    plain = lint_sql(
        "ALTER TABLE users DROP COLUMN name;", LintConfig(runner_orders_contract=False)
    )
    assert plain.has_errors


def test_locking_findings_stay_errors_in_a_contract_migration() -> None:
    result = lint_sql(
        "ALTER TABLE users DROP COLUMN name;\nALTER TABLE users ALTER COLUMN id TYPE text;"
    )
    assert result.phase == "contract"
    assert any(f.rule == "changing-column-type" and f.severity == "error" for f in result.findings)


# ---------------------------------------------------------------- the lint fails closed


def test_a_statement_the_lint_cannot_analyse_is_an_error_and_contract() -> None:
    result = lint_sql("DO $$ BEGIN EXECUTE 'ALTER TABLE users DROP COLUMN a'; END $$;")
    [finding] = result.findings
    assert (finding.rule, finding.severity) == ("unrecognized-statement", "error")
    assert result.phase == "contract"


def test_a_configured_ignore_counts_as_review() -> None:
    reviewed = LintConfig(ignore=frozenset({"unrecognized-statement"}))
    result = lint_sql("DO $$ BEGIN PERFORM 1; END $$;", reviewed)
    assert result.findings == []
    assert result.phase == "expand"


# ---------------------------------------------------------------- facts across one migration set


def test_a_check_validated_in_an_earlier_migration_satisfies_a_later_set_not_null() -> None:
    first, second, third = lint_set(
        [
            (
                "ALTER TABLE users ADD CONSTRAINT users_email_nn "
                "CHECK (email IS NOT NULL) NOT VALID;",
                "001.up.sql",
            ),
            ("ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;", "002.up.sql"),
            ("ALTER TABLE users ALTER COLUMN email SET NOT NULL;", "003.up.sql"),
        ],
        BASE,
    )
    assert found(first) == found(second) == found(third) == []
    # alone, the last file cannot know about the check
    assert found(lint_sql("ALTER TABLE users ALTER COLUMN email SET NOT NULL;", BASE)) == [
        ("adding-not-nullable-field", 1)
    ]


def test_validating_in_a_later_migration_is_not_the_same_transaction() -> None:
    _, second = lint_set(
        [
            ("ALTER TABLE users ADD CONSTRAINT c CHECK (a > 0) NOT VALID;", "001.up.sql"),
            ("ALTER TABLE users VALIDATE CONSTRAINT c;", "002.up.sql"),
        ],
        BASE,
    )
    assert found(second) == []


def test_a_table_created_by_an_earlier_migration_is_an_existing_table_later() -> None:
    _, second = lint_set(
        [
            ("CREATE TABLE t (id bigint, note text);", "001.up.sql"),
            ("CREATE INDEX t_note_idx ON t (note);", "002.up.sql"),
        ],
        BASE,
    )
    assert found(second) == [("require-concurrent-index-creation", 1)]


def test_a_column_type_from_an_earlier_migration_tells_a_safe_change() -> None:
    _, second = lint_set(
        [
            ("CREATE TABLE t (id bigint, code varchar(20));", "001.up.sql"),
            ("ALTER TABLE t ALTER COLUMN code TYPE varchar(40);", "002.up.sql"),
        ],
        BASE,
    )
    assert [rule for rule, _ in found(second)] == ["prefer-text-field"]
