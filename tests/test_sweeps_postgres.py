"""Sweeps across machines on a real PostgreSQL server (tests/postgres_server.py): the
README's "Many machines" steps - a role and a database, the URL - then a sweep created
with no local workers and run by two ``python -m pipelines sweep-worker`` processes against
it, as other machines would join. Skips where the PostgreSQL binaries are absent; CI
installs them (``.ci/run``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipelines.runs.store import RunStore
from pipelines.sweeps import (
    SweepSpec,
    list_sweeps,
    parse_param,
    start_sweep,
    sweep_state_of,
    sweep_trials,
)
from tests.postgres_server import postgres_server, why_not
from tests.sweep_workload import EPOCH_S_ENV

pytestmark = pytest.mark.skipif(why_not() is not None, reason=str(why_not()))


def test_two_sweep_workers_share_one_postgresql_study(runs_dir, tiny_data, monkeypatch):
    import psycopg2

    monkeypatch.setenv("PIPELINES_TEST_WORKLOAD", "tests.sweep_workload:curve_workload")
    monkeypatch.setenv(EPOCH_S_ENV, "0.5")
    monkeypatch.delenv("SWEEP_STORAGE", raising=False)
    with postgres_server() as server:
        admin = psycopg2.connect(server["superuser_url"])
        admin.autocommit = True
        with admin.cursor() as c:  # README, "Many machines", step 2
            c.execute("CREATE ROLE sweeper LOGIN PASSWORD 'sweep-pass'")
            c.execute("CREATE DATABASE sweeps OWNER sweeper")
        admin.close()
        url = f"postgresql://sweeper:sweep-pass@127.0.0.1:{server['port']}/sweeps"

        spec = SweepSpec(
            params=(parse_param("phase1.lr=1e-4,1e-3,1e-2"), parse_param("batch_size=4,8")),
            fixed={"dataset": tiny_data, "phase1.epochs": 2, "phase2.epochs": 0},
            sampler="grid",
        )
        sweep_id = start_sweep(spec, storage=url, workers=0)
        env = {**os.environ, "SWEEP_STORAGE": url}
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "pipelines", "sweep-worker", "--sweep", sweep_id],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        try:
            outputs = [w.communicate(timeout=180)[0].decode() for w in workers]
        finally:
            for w in workers:
                w.kill()
        assert [w.returncode for w in workers] == [0, 0], outputs
        assert sweep_state_of(sweep_id, url) == "finished"
        trials = sweep_trials(sweep_id, url)
        points = {tuple(sorted(t["params"].items())) for t in trials}
        assert len(trials) == len(points) == 6
        assert {t["state"] for t in trials} == {"COMPLETE"}
        assert all("trial" in o and "starts" in o for o in outputs), outputs  # both worked
        runs = RunStore().runs_in_sweep(sweep_id)
        assert sorted(r.trial for r in runs) == list(range(6))
        assert [s["sweep_id"] for s in list_sweeps(url)] == [sweep_id]
        assert list_sweeps() == []  # the embedded storage knows nothing of it
        time.sleep(0)  # the server stops and its folder goes in postgres_server()
