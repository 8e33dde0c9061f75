"""What `aiconn.devstack.nocview` reads from the NOC page's DOM (Chromium's --dump-dom output)."""

from __future__ import annotations

from aiconn.devstack.nocview import read_dom

PAGE = """<html><body>
<section id="first" class="urgent">Needs a human first: <b>demo/sla-a</b> breach,
 alert page-1h</section>
<svg id="chart-budget"><g><polyline data-sla="demo/sla-a" data-min="-12.5" data-max="100"
 data-points="42"></polyline></g><polyline data-sla="demo/sla-b" data-min="90" data-max="99"
 data-points="3"/></svg>
<svg id="chart-attainment"><polyline data-sla="demo/sla-a" data-min="1" data-max="2"/></svg>
<svg id="chart-credits"><rect data-period="2026-11-01T00:00:00Z" data-credits="1.5"></rect>
<rect x="0"></rect></svg>
<table id="fleet"><tbody><tr data-sla="demo/sla-a" class="breach"><td>a<br>b</td></tr>
<tr data-sla="demo/sla-b" class=""><td><input type="checkbox"></td></tr></tbody></table>
<table id="events"><tbody><tr data-sla="demo/sla-a" data-reason="ErrorBudgetExhausted"
 class="warning"><td>x</td></tr><tr data-sla="demo/sla-a" data-reason="Settled"></tr></tbody>
</table></body></html>"""


def test_the_page_is_read_section_by_section() -> None:
    view = read_dom(PAGE)
    assert view.first == "Needs a human first: demo/sla-a breach, alert page-1h"
    assert set(view.budget) == {"demo/sla-a", "demo/sla-b"}  # not the attainment chart's line
    line = view.budget["demo/sla-a"]
    assert (line.low, line.high, line.points) == (-12.5, 100.0, 42)
    assert view.credit_bars == ["2026-11-01T00:00:00Z"]  # the unlabelled rect is no period
    assert view.fleet == {"demo/sla-a": "breach", "demo/sla-b": ""}
    assert view.events == [("demo/sla-a", "ErrorBudgetExhausted"), ("demo/sla-a", "Settled")]


def test_an_empty_page_reads_as_nothing_shown() -> None:
    view = read_dom("<html><body><svg id='chart-budget'></svg></body></html>")
    assert not view.budget and not view.fleet and not view.events and not view.credit_bars
