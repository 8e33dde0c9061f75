"""The operator's process-wide runtime: settings and the API client, opened at startup.

Kopf handlers are module-level functions, so they reach the runtime here instead of through
globals scattered over modules; tests run the same handlers with KopfRunner.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiconn.operator.kubeapi import KubeApi, load_api_client
from aiconn.operator.settings import OperatorSettings


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: KubeApi


_runtime: Runtime | None = None


def open_runtime(settings: OperatorSettings | None = None) -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(settings=settings or OperatorSettings(), kube=KubeApi(load_api_client()))
    return _runtime


async def close_runtime() -> None:
    global _runtime
    if _runtime is not None:
        await asyncio.to_thread(_runtime.kube.close)
        _runtime = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator runtime is not open (the startup handler opens it)")
    return _runtime


def kube() -> KubeApi:
    return runtime().kube


def settings() -> OperatorSettings:
    return runtime().settings
