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


def test_a_new_cluster_keeps_the_models_and_nothing_of_the_last_cluster(tmp_path: Path) -> None:
    """A second `make demo` starts from an empty cluster: the last one's etcd would still hold
    its namespaces and volumes (the ledger's PersistentVolume "already exists")."""
    from aiconn.devstack.cluster import fresh_cluster_dir

    for name in ("controlplane/etcd", "ledger-volume", "prometheus/tsdb", "api-tls", "logs"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "data").write_text("x")
    (tmp_path / "models-acme-edge" / "tiny-llama").mkdir(parents=True)
    assert fresh_cluster_dir(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models-acme-edge"]
    assert (tmp_path / "models-acme-edge" / "tiny-llama").is_dir()
