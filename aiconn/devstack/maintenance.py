"""The demo's planned maintenance: announced by the provider in advance, and excused.

The provider lets the demo's offer excuse maintenance announced one minute ahead (the demo runs
periods of minutes instead of months, so the notice shrinks with it) and declares a
MaintenanceWindow over the last minute of the period the faults go into, well before that minute
begins. The demo then takes vLLM down for that minute: the outage earlier in the period, which
nobody announced, stays bad; this one is excused and shows as such in the status, the settlement
and the report.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiconn.devstack import stack
from aiconn.devstack.kube import apply_objects
from aiconn.resources.v1alpha1.kinds import MAINTENANCE_WINDOW, OFFER
from aiconn.resources.v1alpha1.meta import API_VERSION, GROUP, VERSION
from aiconn.sla.periods import Period

NOTICE_MINUTES = 1
"""The demo offer's notice: one minute at the demo's scale (72 hours in the published SLA)."""


def announce(api: Any, *, offer: str, period: Period) -> Period:
    """Excuse announced maintenance under `offer` and declare a window over `period`'s last
    minute, now; returns the window. Both are the provider's acts (cluster-scoped objects)."""
    from kubernetes import client

    window = Period(start=period.end - timedelta(minutes=1), end=period.end)
    client.CustomObjectsApi(api).patch_cluster_custom_object(
        GROUP,
        VERSION,
        OFFER.plural,
        offer,
        {"spec": {"maintenance": {"noticeMinutes": NOTICE_MINUTES}}},
    )
    apply_objects(
        api,
        [
            {
                "apiVersion": API_VERSION,
                "kind": MAINTENANCE_WINDOW.kind,
                "metadata": {"name": f"demo-{window.start:%Y%m%d-%H%M}"},
                "spec": {
                    "start": window.start_iso,
                    "end": window.end_iso,
                    "offers": [offer],
                    "reason": "demo: model server restart",
                },
            }
        ],
    )
    stack.say(
        f"provider announces maintenance of the model server for {window.start:%H:%M}-"
        f"{window.end:%H:%M} UTC (offer {offer} excuses windows declared"
        f" {NOTICE_MINUTES} min ahead): that minute will be excused, not bad"
    )
    return window
