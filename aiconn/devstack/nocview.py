"""The NOC page as an engineer sees it when they open it after an incident.

Headless Chromium (Debian's, installed by `make system-deps`) loads `/noc` afresh, which is what a
reload is: the page keeps nothing in the tab, so whatever it shows was read back from Prometheus,
the ledger and the API server's Events. Two loads of the same URL: one writes a screenshot at
1280 px, the other prints the DOM after the page's scripts ran, from which `NocView` reads what
the charts, the fleet table and the activity feed hold. Virtual time lets the page's fetches and
first draw finish without a fixed sleep.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from aiconn.devstack.pki import spki_sha256

WIDTH = 1280
HEIGHT = 1900
"""Tall enough for the charts, the fleet table and the top of the activity feed in one image."""

VIRTUAL_TIME_MS = 20_000
"""How much page time Chromium grants before it snapshots: the page's fetches and first draw."""

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WIDTH},{HEIGHT}",
    f"--virtual-time-budget={VIRTUAL_TIME_MS}",
)


class NocViewError(RuntimeError):
    """Chromium could not load the page."""


@dataclass
class BudgetLine:
    """One SLA's line in the budget-over-time chart: its lowest and highest points."""

    sla: str
    low: float
    high: float
    points: int


@dataclass
class NocView:
    """What the loaded page shows, read from its DOM."""

    fleet: dict[str, str] = field(default_factory=dict)
    """Fleet table rows: SLA (namespace/name) -> row class (breach, unplaceable, ...)."""
    budget: dict[str, BudgetLine] = field(default_factory=dict)
    credit_bars: list[str] = field(default_factory=list)
    """The settled periods drawn in the credits chart."""
    events: list[tuple[str, str]] = field(default_factory=list)
    """Activity feed rows: (SLA, Event reason), newest first."""
    first: str = ""
    """The 'needs a human first' line."""


class _DomReader(HTMLParser):
    """Collects the NOC page's data attributes; which element lies in which section is tracked
    by the id of the nearest enclosing element that has one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.view = NocView()
        self._ids: list[str | None] = []
        self._in_first = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        section = self._section()
        if tag == "tr" and "data-sla" in a:
            if section == "fleet":
                self.view.fleet[a["data-sla"]] = a.get("class", "")
            elif section == "events":
                self.view.events.append((a["data-sla"], a.get("data-reason", "")))
        elif tag == "polyline" and section == "chart-budget" and "data-sla" in a:
            self.view.budget[a["data-sla"]] = BudgetLine(
                sla=a["data-sla"],
                low=float(a.get("data-min") or "nan"),
                high=float(a.get("data-max") or "nan"),
                points=int(a.get("data-points") or 0),
            )
        elif tag == "rect" and section == "chart-credits" and "data-period" in a:
            self.view.credit_bars.append(a["data-period"])
        if tag in _VOID:
            return
        self._ids.append(a.get("id"))
        if a.get("id") == "first":
            self._in_first = len(self._ids)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID or not self._ids:
            return
        if self._in_first == len(self._ids):
            self._in_first = 0
        self._ids.pop()

    def handle_data(self, data: str) -> None:
        if self._in_first:
            self.view.first += data

    def _section(self) -> str | None:
        return next((i for i in reversed(self._ids) if i), None)


_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


def read_dom(html: str) -> NocView:
    reader = _DomReader()
    reader.feed(html)
    reader.close()
    reader.view.first = " ".join(reader.view.first.split())
    return reader.view


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise NocViewError("chromium is not installed (make system-deps installs it)")
    return found


def _run(args: list[str], timeout: float) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise NocViewError(f"chromium exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def load(
    url: str, *, screenshot: Path | None = None, timeout: float = 120, ca_file: Path | None = None
) -> NocView:
    """Open the NOC page afresh and read what it shows; with `screenshot`, also save a PNG.

    The URL carries the NOC token in its fragment (`/noc#token=...`): the fragment never reaches
    a server or a log, and the token is not printed here. With `ca_file` (the dev stack's private
    CA) Chromium accepts exactly the chains that carry that CA's key, and no other certificate.
    """
    browser = chromium()
    flags = list(FLAGS)
    if ca_file is not None:
        flags.append(f"--ignore-certificate-errors-spki-list={spki_sha256(ca_file.read_bytes())}")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _run([browser, *flags, f"--screenshot={screenshot}", url], timeout)
        if not screenshot.exists():
            raise NocViewError(f"chromium wrote no screenshot at {screenshot}")
    dom = _run([browser, *flags, "--dump-dom", url], timeout)
    if not dom.strip():
        # Chromium dumps nothing for a page it would not load (e.g. a certificate it does not
        # trust); the fragment holds the token, so it stays out of the message.
        raise NocViewError(f"chromium loaded nothing from {url.split('#', 1)[0]}")
    return read_dom(dom)
