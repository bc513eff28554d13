"""Where migrations come from: inline specs, ConfigMaps and directories, in every layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lockstep.api.migration import InlineMigration
from lockstep.migrations.source import (
    Migration,
    SourceError,
    from_configmap,
    from_directory,
    from_inline,
    source_hash,
)

CREATE = "CREATE TABLE users (id bigint PRIMARY KEY);\n"
DROP = "DROP TABLE users;\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# ----------------------------------------------------------------------------- the model


def test_the_checksum_is_the_sha256_of_the_up_sql() -> None:
    migration = Migration(version="001", name="users", up=CREATE, down=DROP)
    assert migration.checksum == hashlib.sha256(CREATE.encode()).hexdigest()
    assert migration.label == "001 (users)"


def test_the_source_hash_changes_with_any_part_of_any_migration() -> None:
    base = [Migration("001", "users", CREATE, DROP), Migration("002", "x", "SELECT 1;")]
    same = list(reversed(base))
    edited_down = [Migration("001", "users", CREATE, "DROP TABLE users CASCADE;"), base[1]]
    new_phase = [Migration("001", "users", CREATE, DROP, "contract"), base[1]]
    assert source_hash(base) == source_hash(same)
    assert source_hash(base) != source_hash(edited_down)
    assert source_hash(base) != source_hash(new_phase)


# ------------------------------------------------------------------------------------ inline


def test_inline_migrations_sort_by_version_and_keep_their_phase() -> None:
    migrations = from_inline(
        [
            InlineMigration(version="20260102000000", name="drop_old", up=DROP, phase="contract"),
            InlineMigration(version="20260101000000", name="users", up=CREATE, down=DROP),
        ]
    )
    assert [m.version for m in migrations] == ["20260101000000", "20260102000000"]
    assert migrations[0].down == DROP
    assert migrations[0].declared_phase is None
    assert migrations[1].declared_phase == "contract"


def test_inline_phase_can_also_come_from_the_sql_directive() -> None:
    (migration,) = from_inline(
        [InlineMigration(version="1", name="a", up="-- lockstep:phase=contract\n" + DROP)]
    )
    assert migration.declared_phase == "contract"


def test_inline_phase_and_directive_must_agree() -> None:
    entry = InlineMigration(
        version="1", name="a", up="-- lockstep:phase=contract\n" + DROP, phase="expand"
    )
    with pytest.raises(SourceError, match="inline migration 1_a: phase is 'expand'"):
        from_inline([entry])


def test_inline_duplicate_versions_are_an_error() -> None:
    with pytest.raises(SourceError, match="version 1 is also used by inline migration 1_a"):
        from_inline(
            [
                InlineMigration(version="1", name="a", up=CREATE),
                InlineMigration(version="1", name="b", up=DROP),
            ]
        )


# --------------------------------------------------------------------------------- ConfigMap


def test_configmap_up_and_down_keys_pair_by_version() -> None:
    migrations = from_configmap(
        {
            "002_drop_users.up.sql": "-- lockstep:phase=contract\n" + DROP,
            "001_users.up.sql": CREATE,
            "001_users.down.sql": DROP,
            "README.md": "how to write migrations",
            "lockstep.yaml": "x: 1",
        }
    )
    assert [(m.version, m.name, m.down is not None) for m in migrations] == [
        ("001", "users", True),
        ("002", "drop_users", False),
    ]
    assert migrations[1].declared_phase == "contract"
    assert migrations[0].origin == "ConfigMap key 001_users.up.sql"


def test_configmap_accepts_the_flattened_prisma_layout() -> None:
    migrations = from_configmap(
        {
            "20260101120000_init__migration.sql": CREATE,
            "20260101120000_init__down.sql": DROP,
            "20260202120000_add_email__migration.sql": "ALTER TABLE users ADD COLUMN email text;",
        }
    )
    assert [(m.version, m.name) for m in migrations] == [
        ("20260101120000", "init"),
        ("20260202120000", "add_email"),
    ]
    assert migrations[0].down == DROP


def test_configmap_rejects_an_unrecognised_sql_key_by_name() -> None:
    with pytest.raises(SourceError, match=r"ConfigMap key V1__init\.sql: not a migration name"):
        from_configmap({"V1__init.sql": CREATE})


def test_configmap_rejects_a_down_without_its_up() -> None:
    with pytest.raises(
        SourceError, match=r"ConfigMap key 003_x\.down\.sql: a down migration without its up"
    ):
        from_configmap({"001_users.up.sql": CREATE, "003_x.down.sql": DROP})


def test_configmap_rejects_duplicate_versions_naming_both_keys() -> None:
    with pytest.raises(SourceError) as failure:
        from_configmap({"001_users.up.sql": CREATE, "001_other.up.sql": CREATE})
    assert "001_other.up.sql" in str(failure.value)
    assert "001_users.up.sql" in str(failure.value)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("_users.up.sql", "is not <version>_<name>"),
        ("001.up.sql", "is not <version>_<name>"),
        ("001_bad name.up.sql", "is not <version>_<name>"),
        ("00$1_users.up.sql", "is not <version>_<name>"),
    ],
)
def test_configmap_rejects_bad_names(key: str, problem: str) -> None:
    with pytest.raises(SourceError, match=problem) as failure:
        from_configmap({key: CREATE})
    assert key in str(failure.value)


def test_an_empty_migration_is_an_error() -> None:
    with pytest.raises(SourceError, match=r"001_users\.up\.sql: the file is empty"):
        from_configmap({"001_users.up.sql": "  \n"})


def test_an_unknown_phase_directive_is_an_error() -> None:
    with pytest.raises(SourceError, match="lockstep:phase=later is not a phase"):
        from_configmap({"001_users.up.sql": "-- lockstep:phase=later\n" + CREATE})


# --------------------------------------------------------------------------------- directory


def test_a_directory_of_up_and_down_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "001_users.up.sql": CREATE,
            "001_users.down.sql": DROP,
            "002_email.up.sql": "ALTER TABLE users ADD COLUMN email text;",
            "README.md": "notes",
        },
    )
    migrations = from_directory(tmp_path)
    assert [(m.version, m.name, m.down is not None) for m in migrations] == [
        ("001", "users", True),
        ("002", "email", False),
    ]
    assert migrations[0].origin == str(tmp_path / "001_users.up.sql")


def test_a_directory_of_prisma_folders(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "migration_lock.toml": 'provider = "postgresql"\n',
            "20260101120000_init/migration.sql": CREATE,
            "20260101120000_init/down.sql": DROP,
            "20260202120000_email/migration.sql": "ALTER TABLE users ADD COLUMN email text;",
            "docs/notes.txt": "not a migration folder",
        },
    )
    migrations = from_directory(tmp_path)
    assert [(m.version, m.name) for m in migrations] == [
        ("20260101120000", "init"),
        ("20260202120000", "email"),
    ]
    assert migrations[0].down == DROP
    assert migrations[1].down is None


def test_a_mounted_configmap_directory_is_read_like_the_configmap(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "..2026_01_01_00_00_00.1/001_users.up.sql": CREATE,
            "001_users.up.sql": CREATE,
            "002_email__migration.sql": "ALTER TABLE users ADD COLUMN email text;",
        },
    )
    assert [m.version for m in from_directory(tmp_path)] == ["001", "002"]


def test_a_directory_with_a_flat_file_and_a_folder_of_the_same_version(tmp_path: Path) -> None:
    write(tmp_path, {"001_users.up.sql": CREATE, "001_users/migration.sql": CREATE})
    with pytest.raises(SourceError, match="version 001 is also used by"):
        from_directory(tmp_path)


def test_a_prisma_folder_with_a_stray_sql_file(tmp_path: Path) -> None:
    write(tmp_path, {"001_users/migration.sql": CREATE, "001_users/seed.sql": "SELECT 1;"})
    with pytest.raises(SourceError, match=r"001_users/seed.sql: unexpected SQL file"):
        from_directory(tmp_path)


def test_a_prisma_down_without_migration_sql(tmp_path: Path) -> None:
    write(tmp_path, {"001_users/down.sql": DROP})
    with pytest.raises(SourceError, match=r"001_users/down.sql: a down migration without its up"):
        from_directory(tmp_path)


def test_a_badly_named_file_in_a_directory(tmp_path: Path) -> None:
    write(tmp_path, {"001_users.up.sql": CREATE, "schema.sql": CREATE})
    with pytest.raises(SourceError, match=r"schema.sql: not a migration file name"):
        from_directory(tmp_path)


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "001_users.up.sql").write_bytes(b"SELECT '\xff';")
    with pytest.raises(SourceError, match=r"001_users.up.sql: not UTF-8"):
        from_directory(tmp_path)


def test_a_path_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a directory"):
        from_directory(tmp_path / "missing")


def test_versions_sort_lexically(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "20260110000000_c.up.sql": "SELECT 3;",
            "20260101000000_a.up.sql": "SELECT 1;",
            "20260102000000_b.up.sql": "SELECT 2;",
        },
    )
    assert [m.name for m in from_directory(tmp_path)] == ["a", "b", "c"]


def test_a_byte_order_mark_is_not_part_of_the_sql(tmp_path: Path) -> None:
    (tmp_path / "001_users.up.sql").write_text("\ufeff" + CREATE, encoding="utf-8")
    (migration,) = from_directory(tmp_path)
    assert migration.up == CREATE


def test_the_version_pattern_is_the_api_models() -> None:
    from lockstep.api.migration import VERSION_PATTERN as API_PATTERN
    from lockstep.migrations.source import VERSION_PATTERN

    assert VERSION_PATTERN == API_PATTERN
