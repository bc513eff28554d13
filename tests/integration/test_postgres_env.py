import psycopg
from tests.env.postgres import PostgresServer


def test_psycopg_connects_to_the_real_postgresql(
    database_url: str, postgres: PostgresServer
) -> None:
    with psycopg.connect(database_url) as conn:
        version = conn.execute("show server_version_num").fetchone()
    assert version is not None
    assert int(version[0]) // 10000 == postgres.version
