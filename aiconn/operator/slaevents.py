"""Events the operator's fleet-wide passes post on an SLA (the handlers use `kopf.event`).

A pass runs outside any Kopf handler, so it writes the core/v1 Event itself. Failing to post one
never fails the pass: it is logged and the pass goes on.
"""

from __future__ import annotations

import logging

from aiconn.kube import KubeError
from aiconn.operator.conditions import now_iso
from aiconn.operator.kubeapi import KubeApi
from aiconn.resources.v1alpha1.meta import API_VERSION

log = logging.getLogger(__name__)

COMPONENT = "aiconn-operator"
MAX_EVENT_MESSAGE = 1024


async def post_sla_event(
    kube: KubeApi,
    *,
    kind: str,
    name: str,
    namespace: str,
    uid: str,
    type_: str,
    reason: str,
    message: str,
) -> None:
    """A core/v1 Event on the SLA `namespace/name`, its message cut to the API's limit."""
    stamp = now_iso()
    body = {
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": kind,
            "name": name,
            "namespace": namespace,
            "uid": uid,
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_EVENT_MESSAGE],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
    }
    try:
        await kube.call("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
    except KubeError as err:
        log.warning("Event %s on %s/%s not posted: %s", reason, namespace, name, err)
