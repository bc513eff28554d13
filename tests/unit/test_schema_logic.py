"""The pure parts of the schema knowledge: diff decisions on catalogs, compatibility breaks,
probe observations, and the lint's severity from live table sizes."""

from __future__ import annotations

import pytest

from lockstep.lint import LintConfig, lint_sql
from lockstep.lint.model import LiveTable, LiveTables
from lockstep.migrations.plan import Plan, PlannedStatement, Step, with_observations
from lockstep.migrations.source import Migration
from lockstep.schema.catalog import Catalog, Column, Constraint, Enum, Index, Table, View
from lockstep.schema.compat import breaks
from lockstep.schema.diff import DiffError, HazardError, binary_coercible, diff, volatile_default
from lockstep.schema.generate import parse_rename
from lockstep.schema.probe import Observation, lock_name

USERS = Table(
    "public.users",
    columns=(Column("id", "bigint", not_null=True), Column("email", "character varying(40)")),
    constraints=(Constraint("users_pkey", "primary", "PRIMARY KEY (id)", columns=("id",)),),
    indexes=(
        Index(
            "public.users_pkey",
            "public.users",
            "CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)",
            unique=True,
            constraint="users_pkey",
        ),
    ),
    privileges=frozenset({("app", "SELECT"), ("app", "INSERT")}),
)


def catalog(*tables: Table, views: tuple[View, ...] = (), enums: tuple[Enum, ...] = ()) -> Catalog:
    return Catalog(schemas=("public",), tables=tables, views=views, enums=enums)


def with_columns(table: Table, *columns: Column) -> Table:
    return Table(
        table.name,
        columns=columns,
        constraints=table.constraints,
        indexes=table.indexes,
        privileges=table.privileges,
    )


# ----------------------------------------------------------------------------- type changes


@pytest.mark.parametrize(
    ("old", "new", "safe"),
    [
        ("character varying(40)", "character varying(80)", True),
        ("character varying(40)", "character varying(20)", False),
        ("character varying(40)", "text", True),
        ("text", "character varying", True),
        ("text", "character varying(10)", False),
        ("numeric(10,2)", "numeric(12,2)", True),
        ("numeric(10,2)", "numeric(12,3)", False),
        ("numeric(10,2)", "numeric", True),
        ("timestamp(3) with time zone", "timestamp with time zone", True),
        ("timestamp without time zone", "timestamp with time zone", False),
        ("integer", "bigint", False),
        ("cidr", "inet", True),
    ],
)
def test_binary_coercible_type_changes(old: str, new: str, safe: bool) -> None:
    assert binary_coercible(old, new) is safe


@pytest.mark.parametrize(
    ("default", "volatile"),
    [
        ("gen_random_uuid()", True),
        ("now()", False),
        ("0", False),
        (None, False),
        ("nextval('public.s'::regclass)", True),
        ("'x'::text", False),
    ],
)
def test_volatile_defaults(default: str | None, volatile: bool) -> None:
    assert volatile_default(default) is volatile


# ------------------------------------------------------------------------------------- diff


def test_no_difference_means_no_migration() -> None:
    assert diff(catalog(USERS), catalog(USERS)).empty


def test_a_new_column_with_a_constant_default_is_one_expand_statement() -> None:
    desired = with_columns(
        USERS, *USERS.columns, Column("plan", "text", not_null=True, default="'free'::text")
    )
    [migration] = diff(catalog(USERS), catalog(desired)).migrations
    assert migration.name == "expand" and migration.phase == "expand"
    assert "ALTER TABLE public.users ADD COLUMN plan text DEFAULT 'free'::text NOT NULL" in (
        migration.up
    )
    assert "DROP COLUMN IF EXISTS plan" in (migration.down or "")


def test_set_not_null_goes_through_a_validated_check() -> None:
    desired = with_columns(
        USERS, USERS.columns[0], Column("email", "character varying(40)", not_null=True)
    )
    migrations = {m.name: m for m in diff(catalog(USERS), catalog(desired)).migrations}
    assert list(migrations) == ["expand", "expand_validate", "contract"]
    assert "CHECK (email IS NOT NULL) NOT VALID" in migrations["expand"].up
    assert "VALIDATE CONSTRAINT users_email_not_null" in migrations["expand_validate"].up
    contract = migrations["contract"].up
    assert contract.index("SET NOT NULL") < contract.index("DROP CONSTRAINT IF EXISTS")


def test_a_dropped_column_is_a_hazard_in_contract() -> None:
    desired = with_columns(USERS, USERS.columns[0])
    with pytest.raises(HazardError) as refused:
        diff(catalog(USERS), catalog(desired))
    assert refused.value.hazards == (("drop-column", "column public.users.email"),)
    [migration] = diff(catalog(USERS), catalog(desired), allow=["drop-column"]).migrations
    assert migration.phase == "contract"
    assert "ALTER TABLE public.users DROP COLUMN IF EXISTS email" in migration.up


def test_an_unknown_hazard_kind_is_refused() -> None:
    with pytest.raises(DiffError, match="unknown hazard kind"):
        diff(catalog(USERS), catalog(USERS), allow=["drop-everything"])


def test_enum_values_are_added_in_their_own_migration_next_to_existing_ones() -> None:
    old = Enum("public.mood", ("sad", "happy"))
    new = Enum("public.mood", ("sad", "meh", "happy", "ecstatic"))
    [migration] = diff(catalog(enums=(old,)), catalog(enums=(new,))).migrations
    assert migration.name == "expand_types"
    assert "ADD VALUE IF NOT EXISTS 'meh' BEFORE 'happy'" in migration.up
    assert "ADD VALUE IF NOT EXISTS 'ecstatic' AFTER 'happy'" in migration.up
    assert migration.down is None  # an enum value cannot be removed


def test_an_index_on_an_existing_table_is_built_concurrently_on_its_own() -> None:
    index = Index(
        "public.users_email_idx",
        "public.users",
        "CREATE INDEX users_email_idx ON public.users USING btree (email)",
    )
    desired = Table(USERS.name, USERS.columns, USERS.constraints, (*USERS.indexes, index))
    [migration] = diff(catalog(USERS), catalog(desired)).migrations
    assert migration.name == "expand_indexes" and not migration.transactional
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON public.users" in (
        migration.up
    )


def test_views_are_created_after_what_they_read() -> None:
    first = View("public.a", " SELECT 1 AS x;", columns=(("x", "integer"),))
    second = View("public.b", " SELECT a.x FROM public.a;", reads=("public.a",))
    [migration] = diff(catalog(), catalog(views=(second, first))).migrations
    assert migration.up.index("CREATE VIEW public.a") < migration.up.index("CREATE VIEW public.b")


@pytest.mark.parametrize(
    ("hint", "path", "new"),
    [
        ("users.name=full_name", ("users", "name"), "full_name"),
        ("old=new", ("old",), "new"),
        ("app.users.name=n", ("app", "users", "name"), "n"),
    ],
)
def test_rename_hints(hint: str, path: tuple[str, ...], new: str) -> None:
    parsed = parse_rename(hint)
    assert (parsed.path, parsed.new_name) == (path, new)


@pytest.mark.parametrize("hint", ["users.name", "a=b=c", "=x", "a.b.c.d=e"])
def test_bad_rename_hints(hint: str) -> None:
    with pytest.raises(DiffError):
        parse_rename(hint)


# ------------------------------------------------------------------------------ compatibility


def test_compatibility_breaks_come_from_the_catalogs() -> None:
    after = Table(
        "public.users",
        columns=(
            Column("id", "bigint", not_null=True),
            Column("email", "character varying(80)", not_null=True),
            Column("region", "text", not_null=True),
            Column("plan", "text", not_null=True, default="'free'::text"),
        ),
        privileges=frozenset({("app", "SELECT")}),
    )
    found = breaks(catalog(USERS), catalog(after))
    assert found == [
        "column public.users.email becomes NOT NULL without a default: inserts that leave it "
        "out, or write NULL, fail",
        "new column public.users.region is NOT NULL without a default: the running version's "
        "inserts fail",
        "app loses INSERT on public.users",
    ]


def test_a_dropped_table_breaks_the_running_version() -> None:
    assert breaks(catalog(USERS), catalog()) == ["table public.users is gone (dropped or renamed)"]


# ------------------------------------------------------------------------------- the probe


@pytest.mark.parametrize(
    ("mode", "name"),
    [
        ("AccessExclusiveLock", "ACCESS EXCLUSIVE"),
        ("ShareUpdateExclusiveLock", "SHARE UPDATE EXCLUSIVE"),
        ("RowShareLock", "ROW SHARE"),
        ("ShareLock", "SHARE"),
    ],
)
def test_pg_locks_modes_read_as_the_documentation_writes_them(mode: str, name: str) -> None:
    assert lock_name(mode) == name


def test_the_observation_wins_and_the_difference_is_kept() -> None:
    result = lint_sql("ALTER TABLE users ALTER COLUMN email TYPE text;")
    [statement] = result.statements
    step = Step(
        Migration("002", "email", statement.text),
        "up",
        "contract",
        "lint",
        (
            PlannedStatement(
                0, statement.text, 1, "ALTER TABLE", statement.lock, True, (), None, False
            ),
        ),
        True,
    )
    plan = Plan(None, "002", "up", (step,))
    seen = Observation(
        0,
        1,
        statement.text,
        True,
        (("public.users", "ACCESS EXCLUSIVE"),),
        (),
        rule_lock=statement.lock,
        rule_rewrites=True,
    )
    observed = with_observations(plan, {"002": [seen]})
    [planned] = observed.steps[0].statements
    assert planned.observed and planned.lock == "ACCESS EXCLUSIVE"
    assert planned.probe_notes == ("observed no rewrite, the rules said it rewrites",)
    unobserved = Observation(0, 1, statement.text, False, note="finished too soon")
    [planned] = with_observations(plan, {"002": [unobserved]}).steps[0].statements
    assert not planned.observed and planned.probe_notes == ("not observed: finished too soon",)


# ------------------------------------------------------------------ the lint with live sizes


def live(rows: float, size: int) -> LintConfig:
    return LintConfig(
        live=LiveTables((LiveTable("users", "public.users", rows, size),)),
        ignore=frozenset({"require-table-schema"}),
    )


def test_a_blocking_statement_on_a_small_table_is_a_warning_with_its_estimate() -> None:
    [finding] = lint_sql("ALTER TABLE users ALTER COLUMN age TYPE bigint;", live(12, 8192)).findings
    assert (finding.rule, finding.severity) == ("changing-column-type", "warning")
    assert "public.users has about 12 rows (8.0 kB): about" in finding.message


def test_a_blocking_statement_on_a_large_table_is_an_error_with_its_estimate() -> None:
    [finding] = lint_sql(
        "ALTER TABLE users ALTER COLUMN age TYPE bigint;", live(80e6, 12 * 1024**3)
    ).findings
    assert finding.severity == "error"
    assert "about 80.0M rows (12.0 GB): estimated 4 min under the lock" in finding.message


def test_a_table_missing_from_the_live_database_will_be_new() -> None:
    [finding] = lint_sql("CREATE INDEX t_a_idx ON other (a);", live(1, 1)).findings
    assert finding.severity == "warning"
    assert "other is not in the live database" in finding.message
