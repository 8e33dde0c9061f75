"""Fixtures the unit tests share: real components that need no server (a SQLite ledger)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aiconn.store.ledger import Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A fresh SQLite ledger of the test's own, closed afterwards."""
    opened = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield opened
    opened.close()
