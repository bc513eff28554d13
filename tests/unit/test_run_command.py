"""`lockstep run` checks its sharding and election settings before it starts anything."""

from __future__ import annotations

import pytest

from lockstep.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--leader-elect", "--lease-duration=8", "--renew-deadline=10"], "renew deadline"),
        (["--leader-elect", "--renew-deadline=2", "--retry-period=2"], "retry period"),
        (["--selector", "tier in (gold"], "unbalanced parentheses"),
        (["--namespace", "Team_A"], "exact namespace names"),
        (["--instance=Shard_A"], "invalid instance name"),
        (["--liveness", "tcp://0.0.0.0:1"], "http://HOST:PORT/PATH"),
    ],
)
def test_bad_settings_exit_2_with_the_reason_and_start_nothing(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--leader-election-namespace=lockstep-system", *args]) == 2
    assert message in capsys.readouterr().err


def test_settings_come_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCKSTEP_SELECTOR", "a in (")
    assert main(["run"]) == 2
    assert "unbalanced" in capsys.readouterr().err
