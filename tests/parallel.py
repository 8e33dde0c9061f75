"""How `make test` (`pytest -n N --dist loadfile`) spreads the suite over pytest-xdist workers so
that tests waiting for real minutes wait at the same time.

Each test file is one work unit: its tests run in order on one worker, sharing that worker's
control plane, PostgreSQL and vLLM (session fixtures, started per worker on ports of its own,
`AICONN_PORT_SLOT`, and in state dirs of its own), and its module fixtures are set up once. Files
that change the same host state share one unit (`SHARED_UNITS`), so they never overlap.

xdist's own file scheduler hands a worker its next units while the last test of the current one
is still queued (a worker runs a test only once it knows the next one), up to three tests ahead,
so a 9-minute test would hold whole files behind it on its worker while other workers sit idle.
This scheduler queues at most one test ahead: behind the last test of an integration or e2e file
goes a unit-test file (seconds), behind that the next integration or e2e file, those that wait
longest first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xdist.scheduler.loadscope import LoadScopeScheduling

# The units that mostly wait for real minutes to pass, longest first: a SHARED_UNITS name or a
# file. Seconds: set-up and call in the last parallel run (par5, four workers), before the split
# of test_sla_engine. The first start at once, one on each worker (five by default); each next
# goes to the worker that finishes its long unit first (longest processing time first), so no long
# unit is left to start near the end. The rest fill in around them, files with more tests first.
LONGEST_FIRST = (
    # 784 s of `make demo` in the real cluster (a fresh 4-minute period, its settlement, the
    # scenes; its first act also serves the checks of the SLA's pod before the period), then the
    # other two real-node files.
    "real-node",
    "tests/integration/test_sla_engine_vllm_down.py",  # 66 + 572 s: vLLM down, restarted in turn
    "tests/e2e/test_sla_kopf.py",  # 111 + 368 s: a 5-minute SLA's periods settle
    "tests/e2e/test_sla_deletion.py",  # 201 + 191 s: a minute of traffic, then the finalizer
    "tests/integration/test_sla_engine_prometheus.py",  # 241 s: Prometheus down
    "tests/integration/test_gateway_vllm.py",  # 110 s of vLLM down and restarted, then quick tests
    "tests/e2e/test_noc_page.py",  # Chromium against the API: three pages
    # 65 s, most of it 80 requests one at a time, half of them delayed 1.25 s: left to the file
    # order, it started last in a clean-clone run and ended the parallel part.
    "tests/integration/test_sla_engine.py",
)

# A real node changes host state (the aiconn0 bridge, iptables, the node address on lo,
# sysctls) and puts back what it found: two at once would collide and undo each other.
SHARED_UNITS = {
    "tests/integration/test_cluster_real_node.py": "real-node",
    "tests/integration/test_cluster_lifecycle.py": "real-node",
    "tests/e2e/test_demo.py": "real-node",
}


def _is_heavy(scope: str) -> bool:
    """Integration and e2e files start components and wait for them; unit-test files take
    seconds."""
    return not scope.startswith("tests/unit/")


def _rank(scope: str) -> int:
    return LONGEST_FIRST.index(scope) if scope in LONGEST_FIRST else len(LONGEST_FIRST)


class LongestFirstScheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return SHARED_UNITS.get(path, path)

    def _pending_ids(self, node: Any) -> list[str]:
        return [
            nodeid
            for unit in self.assigned_work.get(node, {}).values()
            for nodeid, done in unit.items()
            if not done
        ]

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        # One queued test is what a worker needs to run the one before it: no more than that.
        if len(self._pending_ids(node)) > 1:
            return
        self._assign_work_unit(node)

    def _pick(self, scopes: Iterable[str], *, heavy: bool) -> str | None:
        chosen = [s for s in scopes if _is_heavy(s) == heavy]
        if not chosen:
            return None
        return min(chosen, key=_rank) if heavy else chosen[0]

    def _assign_work_unit(self, node: Any) -> None:
        assert self.workqueue
        pending = self._pending_ids(node)
        # Behind the last test of a heavy file goes a unit-test file; behind that (or nothing),
        # the next heavy file. Whichever kind is used up, the other.
        behind_heavy = bool(pending) and _is_heavy(self._split_scope(pending[-1]))
        scope = self._pick(self.workqueue, heavy=not behind_heavy)
        if scope is None:
            scope = self._pick(self.workqueue, heavy=behind_heavy)
        assert scope is not None
        work_unit = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = work_unit
        collection = self.registered_collections[node]
        node.send_runtest_some(
            [collection.index(nodeid) for nodeid, done in work_unit.items() if not done]
        )


class XdistScheduling:
    """Registered by tests/conftest.py when pytest-xdist is installed; used by `--dist loadfile`."""

    def pytest_xdist_make_scheduler(self, config: Any, log: Any) -> Any:
        if config.getvalue("dist") != "loadfile":
            return None
        return LongestFirstScheduling(config, log)
