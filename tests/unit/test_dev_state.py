"""`aiconn dev up` starts from empty data every time: a second `make demo` after `make down` met
the first run's etcd (its namespaces and SLA) and failed with 409 AlreadyExists."""

from __future__ import annotations

from pathlib import Path

from aiconn.devstack.stack import clear_data


def test_a_new_run_keeps_the_model_and_nothing_of_the_last_runs_data(tmp_path: Path) -> None:
    for d in ("controlplane/etcd/member", "prometheus/wal", "gateway-keys", "tiny-model", "logs"):
        (tmp_path / d).mkdir(parents=True)
    for f in ("controlplane/etcd/member/db", "ledger.db", "ledger.db-wal", "endpoints.json"):
        (tmp_path / f).write_text("x")
    (tmp_path / "tiny-model" / "config.json").write_text("{}")

    clear_data(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "tiny-model"]
    assert (tmp_path / "tiny-model" / "config.json").exists()
    clear_data(tmp_path / "never-started")  # nothing there: nothing to do
