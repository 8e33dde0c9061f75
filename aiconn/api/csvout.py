"""CSV renderings of reports and statements, for enterprises that load them into spreadsheets.

A report is a two-column `field,value` table with nested fields dotted (`credit.creditPercent`),
so every number of the JSON report appears once, spelled the same way; transfers follow as their
own table. A statement is one row per transfer.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from aiconn.api.models import PeriodReport, Statement

CSV_MEDIA_TYPE = "text/csv"
STATEMENT_COLUMNS = (
    "seq",
    "id",
    "createdAt",
    "kind",
    "slaNamespace",
    "slaName",
    "periodStart",
    "debitAccount",
    "creditAccount",
    "amount",
    "signedAmount",
    "unit",
    "priceVersion",
)
TRANSFER_COLUMNS = (
    "seq",
    "id",
    "kind",
    "debitAccount",
    "creditAccount",
    "amount",
    "unit",
    "priceVersion",
)


def report_csv(report: PeriodReport) -> str:
    """`field,value` rows, then a blank row and the transfers table."""
    data = report.model_dump(mode="json", by_alias=True)
    transfers = data.pop("transfers")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("field", "value"))
    writer.writerows(_flatten(data, ""))
    writer.writerow(())
    writer.writerow(TRANSFER_COLUMNS)
    writer.writerows(["" if t[c] is None else t[c] for c in TRANSFER_COLUMNS] for t in transfers)
    return out.getvalue()


def statement_csv(statement: Statement) -> str:
    """One row per transfer, header first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(STATEMENT_COLUMNS)
    for entry in statement.model_dump(mode="json", by_alias=True)["entries"]:
        writer.writerow("" if entry[c] is None else entry[c] for c in STATEMENT_COLUMNS)
    return out.getvalue()


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for index, inner in enumerate(value):
            yield from _flatten(inner, f"{prefix}[{index}]")
    elif isinstance(value, list):
        yield prefix, " ".join(str(v) for v in value)
    else:
        yield prefix, "" if value is None else value
