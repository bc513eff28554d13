"""The rule catalog: every check the lint can report, with its default severity and safe pattern.

Rule ids follow squawk's where squawk has the rule, so `-- squawk-ignore` comments and squawk
configuration carry over. The catalog is also the source of `docs/lint-rules.md`.
"""

from __future__ import annotations

from typing import Literal

from lockstep.lint.record import FrozenRecord

Severity = Literal["error", "warning", "info"]


class Rule(FrozenRecord):
    """One lint rule."""

    __slots__ = ("default_severity", "help", "id", "source", "summary")

    id: str
    default_severity: Severity
    summary: str
    help: str
    source: str

    def __init__(
        self,
        id: str,
        default_severity: Severity,
        summary: str,
        help: str,
        source: str,
    ) -> None:
        self.id = id
        self.default_severity = default_severity
        self.summary = summary
        self.help = help
        self.source = source


# Rules whose only danger is breaking the application version that is running now. In a
# contract migration lockstep runs the statement after that version is gone (and after a
# backup), so there these findings are warnings, unless `errors` raises them again.
COMPATIBILITY_RULES = frozenset(
    {
        "ban-drop-column",
        "ban-drop-table",
        "ban-drop-not-null",
        "renaming-column",
        "renaming-table",
        "renaming-schema",
        "renaming-enum-value",
        "ban-revoke",
    }
)


_CATALOG: tuple[Rule, ...] = (
    # ------------------------------------------------------------------ adding columns
    Rule(
        "adding-field-with-default",
        "error",
        "ADD COLUMN with a volatile DEFAULT (or any non-NULL DEFAULT before PostgreSQL 11) "
        "rewrites the table and its indexes under ACCESS EXCLUSIVE.",
        "Add the column without a default, set the default in a second statement, then "
        "backfill in batches: ALTER TABLE t ADD COLUMN c uuid; "
        "ALTER TABLE t ALTER COLUMN c SET DEFAULT gen_random_uuid(); "
        "UPDATE t SET c = gen_random_uuid() WHERE id BETWEEN ... (in batches, outside the "
        "migration).",
        "squawk: adding-field-with-default; strong_migrations: add_column_default, "
        "add_column_default_callable; atlas: PG302",
    ),
    Rule(
        "adding-generated-stored-column",
        "error",
        "ADD COLUMN ... GENERATED ALWAYS AS (...) STORED computes the value for every row: a "
        "table rewrite under ACCESS EXCLUSIVE.",
        "Add a plain nullable column, fill it from a trigger for new rows and backfill old "
        "rows in batches; or create the column together with the table.",
        "squawk: adding-field-with-default (generated columns); strong_migrations: "
        "add_column_generated_stored",
    ),
    Rule(
        "adding-auto-increment-column",
        "error",
        "Adding a serial or identity column to an existing table fills every row from the "
        "sequence: a table rewrite under ACCESS EXCLUSIVE.",
        "Create a new table with the column, copy the rows in batches, then swap the tables; "
        "or add a plain bigint column, attach a sequence default and backfill in batches.",
        "strong_migrations: add_column_auto_incrementing",
    ),
    Rule(
        "adding-required-field",
        "error",
        "ADD COLUMN ... NOT NULL without a DEFAULT fails on a table that has rows, and the "
        "running application's INSERTs that omit the column fail.",
        "Give the column a constant default (metadata-only on PostgreSQL 11+): "
        "ALTER TABLE t ADD COLUMN c integer NOT NULL DEFAULT 0; or add it nullable, backfill, "
        "then add the NOT NULL constraint with the CHECK ... NOT VALID pattern.",
        "squawk: adding-required-field; atlas: MF103",
    ),
    Rule(
        "adding-not-nullable-field",
        "error",
        "ALTER COLUMN ... SET NOT NULL scans the whole table under ACCESS EXCLUSIVE, and the "
        "running application's writes of NULL start failing.",
        "ALTER TABLE t ADD CONSTRAINT t_c_not_null CHECK (c IS NOT NULL) NOT VALID; then in a "
        "later migration ALTER TABLE t VALIDATE CONSTRAINT t_c_not_null; then (PostgreSQL "
        "12+) ALTER TABLE t ALTER COLUMN c SET NOT NULL, which uses the validated check "
        "instead of a scan; then drop the check.",
        "squawk: adding-not-nullable-field; strong_migrations: change_column_null_postgresql; "
        "atlas: MF104, PG303",
    ),
    Rule(
        "adding-serial-primary-key-field",
        "error",
        "ADD PRIMARY KEY builds a unique index (and checks NOT NULL) under ACCESS EXCLUSIVE, "
        "blocking reads and writes for the whole build.",
        "CREATE UNIQUE INDEX CONCURRENTLY t_pkey_idx ON t (id); then "
        "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pkey_idx; "
        "make the columns NOT NULL first with the CHECK ... NOT VALID pattern.",
        "squawk: adding-serial-primary-key-field; atlas: PG104, PG304",
    ),
    Rule(
        "disallowed-unique-constraint",
        "error",
        "ADD UNIQUE builds a unique index under ACCESS EXCLUSIVE, blocking reads and writes "
        "for the whole build.",
        "CREATE UNIQUE INDEX CONCURRENTLY t_c_key ON t (c); then "
        "ALTER TABLE t ADD CONSTRAINT t_c_key UNIQUE USING INDEX t_c_key;",
        "squawk: disallowed-unique-constraint; strong_migrations: add_unique_constraint; "
        "atlas: PG105",
    ),
    Rule(
        "adding-exclusion-constraint",
        "error",
        "ADD EXCLUDE builds an index and checks every row under ACCESS EXCLUSIVE; exclusion "
        "constraints cannot be added NOT VALID.",
        "There is no online form: create the constraint together with the table, or schedule "
        "the change in a maintenance window.",
        "strong_migrations: add_exclusion_constraint",
    ),
    Rule(
        "adding-foreign-key-constraint",
        "error",
        "ADD FOREIGN KEY without NOT VALID scans the table while holding SHARE ROW EXCLUSIVE on "
        "both tables, blocking their writes.",
        "ALTER TABLE t ADD CONSTRAINT t_u_fk FOREIGN KEY (u_id) REFERENCES u (id) NOT VALID; "
        "then in a later migration ALTER TABLE t VALIDATE CONSTRAINT t_u_fk;",
        "squawk: adding-foreign-key-constraint; strong_migrations: add_foreign_key; atlas: PG306",
    ),
    Rule(
        "constraint-missing-not-valid",
        "error",
        "ADD CHECK without NOT VALID scans the whole table under ACCESS EXCLUSIVE; and a "
        "VALIDATE CONSTRAINT in the same transaction as its NOT VALID add keeps the add's "
        "strong lock during the scan.",
        "ALTER TABLE t ADD CONSTRAINT t_c_check CHECK (c > 0) NOT VALID; then in a later "
        "migration (its own transaction) ALTER TABLE t VALIDATE CONSTRAINT t_c_check;",
        "squawk: constraint-missing-not-valid; strong_migrations: add_check_constraint, "
        "validate_check_constraint, validate_foreign_key; atlas: PG305",
    ),
    # ------------------------------------------------------------------ changing columns
    Rule(
        "changing-column-type",
        "error",
        "ALTER COLUMN ... TYPE rewrites the table and rebuilds its indexes under ACCESS "
        "EXCLUSIVE, unless the change is binary-coercible; the running application may not "
        "handle the new type.",
        "Add a new column of the new type, write both from the application, backfill in "
        "batches, move reads, then drop the old column. In-place changes that need no "
        "rewrite: varchar(n) to a larger varchar or to text, text to varchar, numeric(p,s) to "
        "a larger precision with the same scale, timestamp/time/interval precision increase, "
        "cidr to inet.",
        "squawk: changing-column-type; strong_migrations: change_column; atlas: PG301",
    ),
    Rule(
        "changing-column-type-with-not-null",
        "warning",
        "One ALTER TABLE both changes a column's type and sets it NOT NULL: the NOT NULL scan "
        "runs under the lock of the type change.",
        "Split the steps: change the type in one statement, and make the column NOT NULL with "
        "the CHECK ... NOT VALID pattern.",
        "strong_migrations: change_column_with_not_null",
    ),
    Rule(
        "changing-column-type-with-check",
        "error",
        "Changing the type of a column that has CHECK constraints re-checks every row under "
        "ACCESS EXCLUSIVE, even when the type change itself needs no rewrite.",
        "Drop the CHECK constraints, change the type, then re-add them NOT VALID and validate "
        "them in a later migration.",
        "strong_migrations: change_column_constraint",
    ),
    Rule(
        "ban-drop-not-null",
        "warning",
        "ALTER COLUMN ... DROP NOT NULL lets NULLs in; readers that assume a value may break.",
        "Make sure every reader, including the running version, handles NULL before you drop "
        "the constraint.",
        "squawk: ban-drop-not-null",
    ),
    Rule(
        "table-rewrite",
        "error",
        "SET TABLESPACE, SET LOGGED/UNLOGGED, SET ACCESS METHOD and SET EXPRESSION rewrite the "
        "table (or index) under ACCESS EXCLUSIVE.",
        "Build the new copy online (new table or index, copy in batches, swap) or schedule "
        "the change in a maintenance window.",
        "postgresql: ALTER TABLE notes",
    ),
    # ------------------------------------------------------------------ breaking changes
    Rule(
        "ban-drop-column",
        "error",
        "DROP COLUMN breaks the running application that still reads or writes the column, "
        "and the data is gone.",
        "Stop using the column in the application first (expand), deploy, then drop it in a "
        "contract migration after the old version is gone.",
        "squawk: ban-drop-column; strong_migrations: remove_column; atlas: DS103",
    ),
    Rule(
        "ban-drop-table",
        "error",
        "DROP TABLE breaks the running application that still uses the table, and the data is "
        "gone.",
        "Stop using the table first, deploy, then drop it in a contract migration after a backup.",
        "squawk: ban-drop-table; atlas: DS102",
    ),
    Rule(
        "ban-drop-schema",
        "error",
        "DROP SCHEMA removes every object in the schema with its data.",
        "Drop the objects one by one in contract migrations after the application stopped "
        "using them.",
        "atlas: DS101",
    ),
    Rule(
        "ban-drop-database",
        "error",
        "DROP DATABASE destroys the database.",
        "Do not drop databases from an application migration.",
        "squawk: ban-drop-database",
    ),
    Rule(
        "ban-truncate",
        "error",
        "TRUNCATE empties a table that exists before the migration: its rows are gone, and "
        "the running application loses what it reads.",
        "Delete what must go in batches outside the migration, or drop the table in a "
        "contract migration after a backup once nothing uses it.",
        "lockstep",
    ),
    Rule(
        "ban-truncate-cascade",
        "error",
        "TRUNCATE ... CASCADE also empties every table that references the target through a "
        "foreign key, recursively.",
        "Truncate the tables you mean by name, without CASCADE.",
        "squawk: ban-truncate-cascade",
    ),
    Rule(
        "ban-revoke",
        "error",
        "REVOKE takes privileges away: the running application's queries that need them "
        "fail with permission denied.",
        "Revoke in a contract migration, after the application version that needs the "
        "privilege is gone.",
        "lockstep",
    ),
    Rule(
        "renaming-column",
        "error",
        "RENAME COLUMN breaks the running application that uses the old name.",
        "Add the new column, write both, backfill, move reads, then drop the old column; or "
        "rename in a contract migration after the old version is gone.",
        "squawk: renaming-column; strong_migrations: rename_column; atlas: BC102",
    ),
    Rule(
        "renaming-table",
        "error",
        "Renaming a table or view (or moving it to another schema) breaks the running "
        "application that uses the old name.",
        "Create the new table, write both, backfill, move reads, then drop the old one; or "
        "ALTER TABLE old RENAME TO new together with CREATE VIEW old AS SELECT * FROM new "
        "until the old version is gone.",
        "squawk: renaming-table; strong_migrations: rename_table; atlas: BC101",
    ),
    Rule(
        "renaming-schema",
        "error",
        "ALTER SCHEMA ... RENAME breaks every query that names the schema.",
        "Create the new schema, move objects and writes over, then drop the old schema.",
        "strong_migrations: rename_schema",
    ),
    Rule(
        "renaming-enum-value",
        "error",
        "ALTER TYPE ... RENAME VALUE breaks the running application that writes the old value.",
        "Add the new value (ALTER TYPE t ADD VALUE 'new' AFTER 'old'), move the application "
        "to it, backfill, and stop using the old value.",
        "strong_migrations: rename_enum_value",
    ),
    # ------------------------------------------------------------------ indexes
    Rule(
        "require-concurrent-index-creation",
        "error",
        "CREATE INDEX without CONCURRENTLY holds a SHARE lock for the whole build, blocking "
        "writes to the table.",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_c_idx ON t (c); lockstep runs it outside "
        "the migration transaction.",
        "squawk: require-concurrent-index-creation; strong_migrations: add_index, "
        "add_reference; atlas: PG101",
    ),
    Rule(
        "require-concurrent-index-deletion",
        "error",
        "DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table, and waits behind "
        "every running query while blocking new ones.",
        "DROP INDEX CONCURRENTLY IF EXISTS t_c_idx;",
        "squawk: require-concurrent-index-deletion; strong_migrations: remove_index; atlas: PG102",
    ),
    Rule(
        "require-concurrent-reindex",
        "error",
        "REINDEX without CONCURRENTLY blocks writes to the table and reads that use the index "
        "for the whole rebuild.",
        "REINDEX INDEX CONCURRENTLY t_c_idx; (PostgreSQL 12+; before 12 build a new index "
        "concurrently and drop the old one).",
        "squawk: require-concurrent-reindex",
    ),
    Rule(
        "require-concurrent-partition-detach",
        "error",
        "DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the partitioned table.",
        "ALTER TABLE t DETACH PARTITION p CONCURRENTLY; (PostgreSQL 14+, not with a default "
        "partition); finish an interrupted one with DETACH PARTITION p FINALIZE.",
        "squawk: require-concurrent-partition-detach",
    ),
    Rule(
        "ban-concurrent-index-creation-in-transaction",
        "error",
        "CREATE INDEX CONCURRENTLY inside a BEGIN ... COMMIT block fails: it cannot run in a "
        "transaction block.",
        "Move the statement out of the transaction block (and give it IF NOT EXISTS so a "
        "retry is safe).",
        "squawk: ban-concurrent-index-creation-in-transaction",
    ),
    Rule(
        "index-corruption-pg14",
        "error",
        "CREATE INDEX CONCURRENTLY and REINDEX CONCURRENTLY on PostgreSQL 14.0 to 14.3 can "
        "silently corrupt the index.",
        "Upgrade the server to 14.4 or later before building indexes concurrently.",
        "strong_migrations: add_index_corruption",
    ),
    Rule(
        "index-too-many-columns",
        "warning",
        "A non-unique index on more than three columns rarely helps more than one on the most "
        "selective few, and costs on every write.",
        "Index the most selective columns first and keep non-unique indexes to three columns "
        "or fewer.",
        "strong_migrations: add_index_columns",
    ),
    Rule(
        "unique-on-existing-rows",
        "info",
        "CREATE UNIQUE INDEX on an existing table fails if the rows already hold duplicates "
        "(a failed concurrent build leaves an INVALID index behind).",
        "Check for duplicates first (SELECT c, count(*) FROM t GROUP BY c HAVING count(*) > "
        "1) and clean them up in an earlier migration; lockstep drops an INVALID leftover "
        "index before it retries.",
        "atlas: MF101, MF102",
    ),
    # ------------------------------------------------------------------ data changes
    Rule(
        "backfill-without-batching",
        "error",
        "UPDATE or DELETE without WHERE changes every row in one transaction: it locks every "
        "row for its whole run and bloats the table.",
        "Backfill in batches outside the migration (UPDATE t SET c = ... WHERE id BETWEEN "
        "$1 AND $2, a few thousand rows at a time, with short pauses).",
        "strong_migrations: backfilling data",
    ),
    Rule(
        "backfill-in-ddl-transaction",
        "error",
        "An UPDATE or DELETE runs in the same transaction as DDL on the same table: the DDL's "
        "lock is held for the whole data change.",
        "Put the schema change and the backfill in separate migrations, and batch the backfill.",
        "strong_migrations: backfilling data, change_column_null",
    ),
    Rule(
        "ban-duplicate-column-assignments",
        "error",
        "The same column is declared or assigned twice in one statement: PostgreSQL rejects "
        "it at run time.",
        "Declare or assign each column once.",
        "squawk: ban-duplicate-column-assignments",
    ),
    # ------------------------------------------------------------------ types and style
    Rule(
        "ban-char-field",
        "warning",
        "char(n) pads values with blanks and is no faster than text.",
        "Use text (with a CHECK on length if needed) or varchar.",
        "squawk: ban-char-field",
    ),
    Rule(
        "prefer-text-field",
        "warning",
        "varchar(n): raising the limit later is cheap, but lowering it or any other change "
        "needs ACCESS EXCLUSIVE.",
        "Use text with a CHECK constraint on length: c text CHECK (char_length(c) <= 100); "
        "a CHECK can be replaced NOT VALID without blocking.",
        "squawk: prefer-text-field",
    ),
    Rule(
        "prefer-timestamptz",
        "warning",
        "timestamp without time zone drops the UTC offset; values depend on the writer's "
        "time zone.",
        "Use timestamptz (timestamp with time zone).",
        "squawk: prefer-timestamptz (alias prefer-timestamp-tz)",
    ),
    Rule(
        "prefer-bigint-over-int",
        "warning",
        "32-bit integer/serial columns run out at 2,147,483,647, and widening them later "
        "rewrites the table.",
        "Use bigint (or bigint GENERATED ALWAYS AS IDENTITY).",
        "squawk: prefer-bigint-over-int",
    ),
    Rule(
        "prefer-bigint-over-smallint",
        "warning",
        "16-bit smallint/smallserial columns run out at 32,767, and widening them later "
        "rewrites the table.",
        "Use bigint.",
        "squawk: prefer-bigint-over-smallint",
    ),
    Rule(
        "prefer-identity",
        "warning",
        "serial types create a loosely attached sequence with its own ownership and "
        "permission pitfalls.",
        "Use bigint GENERATED ALWAYS AS IDENTITY (or BY DEFAULT).",
        "squawk: prefer-identity",
    ),
    Rule(
        "prefer-jsonb",
        "warning",
        "json has no equality operator (SELECT DISTINCT and GROUP BY fail) and is re-parsed "
        "on every access.",
        "Use jsonb.",
        "strong_migrations: add_column_json",
    ),
    Rule(
        "identifier-too-long",
        "warning",
        "An identifier longer than 63 bytes is silently truncated by PostgreSQL, so later "
        "references by the full name miss it or collide.",
        "Use a name of at most 63 bytes.",
        "squawk: identifier-too-long",
    ),
    Rule(
        "require-table-schema",
        "info",
        "The statement names a table without a schema, so it depends on search_path.",
        "Qualify the name: public.t.",
        "squawk: require-table-schema (opt-in)",
    ),
    # ------------------------------------------------------------------ domains and enums
    Rule(
        "ban-alter-domain-with-add-constraint",
        "error",
        "ALTER DOMAIN ... ADD CONSTRAINT (or SET NOT NULL) checks every column of every table "
        "that uses the domain, under locks on those tables.",
        "Add the constraint to the columns as CHECK ... NOT VALID and validate it later, or "
        "add it to the domain with NOT VALID and VALIDATE CONSTRAINT in a later migration.",
        "squawk: ban-alter-domain-with-add-constraint",
    ),
    Rule(
        "ban-create-domain-with-constraint",
        "warning",
        "A domain with a CHECK is hard to change online later: altering its constraint "
        "re-checks every column that uses it.",
        "Put the CHECK on the columns (it can be replaced NOT VALID), or create the domain "
        "without a constraint.",
        "squawk: ban-create-domain-with-constraint",
    ),
    Rule(
        "require-enum-value-ordering",
        "warning",
        "ALTER TYPE ... ADD VALUE without BEFORE or AFTER appends the value, which changes "
        "how < and ORDER BY treat it relative to the values you meant.",
        "State the position: ALTER TYPE t ADD VALUE IF NOT EXISTS 'new' AFTER 'existing';",
        "squawk: require-enum-value-ordering",
    ),
    # ------------------------------------------------------------------ maintenance statements
    Rule(
        "prefer-repack",
        "error",
        "VACUUM FULL and CLUSTER rewrite the table under ACCESS EXCLUSIVE, blocking reads and "
        "writes for the whole rewrite.",
        "Use pg_repack, or REPACK (CONCURRENTLY) on PostgreSQL 19+; plain VACUUM does not block.",
        "squawk: prefer-repack",
    ),
    # ------------------------------------------------------------------ transactions and runner
    Rule(
        "transaction-nesting",
        "error",
        "BEGIN, COMMIT or ROLLBACK in a migration that already runs in a transaction (lockstep "
        "wraps each migration in one), or nested or unmatched transaction statements.",
        "Remove the transaction statements: lockstep runs the migration in a transaction and "
        "runs statements that cannot run in one on their own.",
        "squawk: transaction-nesting",
    ),
    Rule(
        "ban-uncommitted-transaction",
        "error",
        "BEGIN without a matching COMMIT: the migration reports success but its changes are "
        "rolled back when the session ends.",
        "Remove the BEGIN (lockstep manages the transaction) or add the matching COMMIT.",
        "squawk: ban-uncommitted-transaction",
    ),
    Rule(
        "non-transactional-in-transaction",
        "error",
        "A statement that cannot run inside a transaction block (VACUUM, REINDEX CONCURRENTLY, "
        "DROP INDEX CONCURRENTLY, ALTER TYPE ... ADD VALUE before 12, ...) sits inside an "
        "explicit BEGIN ... COMMIT block.",
        "Move the statement out of the transaction block.",
        "postgresql: statements that cannot run in a transaction block; flyway: PostgreSQLParser",
    ),
    Rule(
        "prefer-robust-stmts",
        "warning",
        "A statement that runs outside a transaction is retried after a partial failure; "
        "without IF [NOT] EXISTS the retry fails on what the first attempt left behind.",
        "Add IF NOT EXISTS / IF EXISTS: CREATE INDEX CONCURRENTLY IF NOT EXISTS t_c_idx ON "
        "t (c); DROP INDEX CONCURRENTLY IF EXISTS t_c_idx;",
        "squawk: prefer-robust-stmts",
    ),
    Rule(
        "ban-timeout-change",
        "error",
        "SET, RESET or set_config() of lock_timeout or statement_timeout in a migration "
        "replaces the bounded timeouts the runner sets from the policy: a statement can then "
        "queue every query on its table for as long as it waits.",
        "Set policy.lockTimeout / policy.statementTimeout (or the CLI's --lock-timeout / "
        "--statement-timeout) instead. To give one long CREATE INDEX CONCURRENTLY more time, "
        "raise statementTimeout for that release, or put -- lockstep-ignore: "
        "ban-timeout-change above the SET after review.",
        "lockstep (squawk: require-lock-timeout, require-statement-timeout)",
    ),
    Rule(
        "explicit-table-lock",
        "error",
        "LOCK TABLE holds the lock until the migration commits, blocking every conflicting "
        "query for the whole migration, not just one statement.",
        "Remove the LOCK: each statement takes the lock it needs, bounded by lock_timeout. "
        "If the order of locks matters, split the migration.",
        "lockstep",
    ),
    Rule(
        "mixed-transaction-modes",
        "error",
        "The migration mixes statements that cannot run in a transaction block (CREATE INDEX "
        "CONCURRENTLY, ...) with statements that run in one: lockstep cannot run it as "
        "one transaction, nor statement by statement safely.",
        "Split it: one migration holding only the statements that cannot run in a "
        "transaction (SET statements may precede them), another for the rest.",
        "lockstep (flyway: mixed)",
    ),
    Rule(
        "require-lock-timeout",
        "error",
        "A statement that takes a strong lock runs without an earlier SET lock_timeout: while "
        "it waits for the lock, every other query on the table queues behind it.",
        "SET lock_timeout = '2s'; before the first such statement (lockstep's runner does this "
        "itself when it manages timeouts).",
        "squawk: require-lock-timeout (and the deprecated require-timeout-settings)",
    ),
    Rule(
        "require-statement-timeout",
        "warning",
        "A statement that takes a strong lock runs without an earlier SET statement_timeout, "
        "so a slow statement can hold its lock for as long as it runs.",
        "SET statement_timeout = '5min'; before the first such statement (lockstep's runner "
        "does this itself when it manages timeouts).",
        "squawk: require-statement-timeout (and the deprecated require-timeout-settings)",
    ),
    Rule(
        "requires-newer-postgres",
        "error",
        "The statement uses a form the configured PostgreSQL version does not have "
        "(REINDEX CONCURRENTLY before 12, DETACH PARTITION CONCURRENTLY before 14).",
        "Use the form the server supports, or set the lint's pg_version to the server's version.",
        "postgresql: release notes 12 and 14",
    ),
    # ------------------------------------------------------------------ the lint itself
    Rule(
        "syntax-error",
        "error",
        "The statement could not be parsed, so it was not checked; its effect is unknown, "
        "so the migration is a contract migration until the statement is reviewed.",
        "Fix the SQL. If it is valid PostgreSQL that the parser does not know, review it by "
        "hand and put -- lockstep-ignore: syntax-error above it; the lint then checks it from "
        "its tokens.",
        "squawk: syntax-error",
    ),
    Rule(
        "unrecognized-statement",
        "error",
        "The statement (or part of it) could not be analysed: a DO block, CALL or EXECUTE "
        "(code the lint cannot see into), or an unknown ALTER action. Its effect is unknown, "
        "so the migration is a contract migration until the statement is reviewed.",
        "Review it by hand, then put -- lockstep-ignore: unrecognized-statement above it "
        "(the migration's phase is then decided by its other statements).",
        "strong_migrations: execute",
    ),
    Rule(
        "unused-ignore",
        "warning",
        "An ignore comment suppresses nothing (or names an unknown rule).",
        "Remove the comment or the rule ids it no longer needs.",
        "squawk: unused-ignore",
    ),
    Rule(
        "phase-override-unsafe",
        "warning",
        "The file says -- lockstep:phase=expand but contains breaking or data-losing "
        "statements, so it would run while the old application version is still live.",
        "Remove the override (the lint then classes the file as contract), or split the "
        "breaking statements into a contract migration.",
        "lockstep",
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _CATALOG}
"""Every rule, by id, in catalog order."""

RULE_ALIASES: dict[str, tuple[str, ...]] = {
    "require-timeout-settings": ("require-lock-timeout", "require-statement-timeout"),
    "prefer-timestamp-tz": ("prefer-timestamptz",),
}
"""squawk's alternative names, accepted in configuration and ignore comments."""


def resolve_rule_ids(ids: frozenset[str] | set[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """Expand aliases; return the known rule ids and, sorted, the ids that are unknown."""
    known: set[str] = set()
    unknown: list[str] = []
    for rule_id in ids:
        if rule_id in RULES:
            known.add(rule_id)
        elif rule_id in RULE_ALIASES:
            known.update(RULE_ALIASES[rule_id])
        else:
            unknown.append(rule_id)
    return frozenset(known), tuple(sorted(unknown))
