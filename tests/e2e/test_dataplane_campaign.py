"""The short release-outcome campaign: one release of each kind (tests/campaign/kinds.py) of the
real sample application under load, each ending as it must, with no request failed by the
release machinery, no acknowledged write lost and no time without a Ready endpoint.
`make campaign` runs a hundred of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.campaign.kinds import KINDS, Kind, table
from tests.campaign.kinds import summarise as summarise_trials
from tests.campaign.trial import Stage, run_trial
from tests.env.cluster import Cluster
from tests.env.executor import LocalPodExecutor
from tests.env.operator_runner import OperatorProcess
from tests.env.postgres import PostgresServer
from tests.env.prometheus import PrometheusServer

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_a_release_of_each_kind_ends_as_it_must(
    kind: Kind,
    cluster: Cluster,
    postgres: PostgresServer,
    prometheus: PrometheusServer,
    pod_executor: LocalPodExecutor,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    stage = Stage(cluster, postgres, prometheus, pod_executor, operator, tmp_path)
    trial = run_trial(stage, KINDS.index(kind) + 1, kind, seed=KINDS.index(kind) + 1)
    print(table(summarise_trials([trial], coverage=None)))
    assert trial.correct, (
        f"{kind.name}: {trial.why_wrong}; faults: {trial.details.get('faults')}; "
        f"steps: {trial.details.get('steps')}; {trial.details.get('machineryFailures', '')}"
    )
    if kind.fault_shows:
        assert trial.rollback_seconds is not None and trial.rollback_seconds < 30, trial
