"""The parallel suite's work units (tests/parallel.py) keep every file that starts a real node in
one unit: a real node changes host state (the node address on lo, the bridge, iptables, sysctls)
and puts back what it found, so two at once undo each other (a clean-clone parallel run saw one
real-node file's stop take the address from under another's API server). The long units it
starts first are units the suite has."""

from __future__ import annotations

import re
from pathlib import Path

from tests.parallel import LONGEST_FIRST, SHARED_UNITS, _rank

TESTS = Path(__file__).resolve().parents[1]
REAL_NODE = re.compile(r"real_node=True|real_node_cluster|demo\.run\(|demo\.started\(")


def test_every_file_that_starts_a_real_node_shares_the_real_node_unit() -> None:
    starting = sorted(
        path.relative_to(TESTS.parent).as_posix()
        for path in TESTS.rglob("test_*.py")
        if path.parent.name in ("integration", "e2e") and REAL_NODE.search(path.read_text())
    )
    assert len(starting) >= 3, starting
    assert {f: SHARED_UNITS.get(f) for f in starting} == dict.fromkeys(starting, "real-node")


def test_the_units_started_first_are_units_of_the_suite_in_their_order() -> None:
    # A file renamed or split away would otherwise leave its long tests unranked: started late,
    # after every file with more tests, and finishing long after the rest.
    units = {
        SHARED_UNITS.get(path, path)
        for path in (p.relative_to(TESTS.parent).as_posix() for p in TESTS.rglob("test_*.py"))
        if path.startswith(("tests/integration/", "tests/e2e/"))
    }
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST), LONGEST_FIRST
    assert set(LONGEST_FIRST) <= units, set(LONGEST_FIRST) - units
    assert sorted(units, key=_rank)[: len(LONGEST_FIRST)] == list(LONGEST_FIRST)
