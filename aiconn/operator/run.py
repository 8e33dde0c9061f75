"""`aiconn operator`: the `kopf run` equivalent with the product's settings."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys

UNUSED_CLIENTS = ("kubernetes", "kubernetes_asyncio", "pykube")
"""Client libraries Kopf imports when they are installed, to recognise their objects and to log
in through them. The operator does neither (its own login handler, plain dicts, the project's
transport), and the official client is 53 MiB of the operator's import (118 -> 65 MiB without it,
measured 2026-12-04) and about 2 s of its start."""


def without_unused_clients() -> None:
    """Make the clients Kopf would import unimportable in this process, before Kopf is
    imported (one already imported, as in a test's process, is left alone)."""
    for name in UNUSED_CLIENTS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


MALLOC_THRESHOLD = 128 * 1024
"""glibc's default mmap threshold; held fixed, with the trim threshold (`return_freed_memory`)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def return_freed_memory() -> bool:
    """Have glibc give freed memory back to the system; False where the C library is not glibc.

    By default glibc raises its mmap threshold to the size of each mapped block freed (up to 32
    MiB): after the first list page or large answer is freed, the operator's later answers of
    that size (every API thread parses JSON of tens of KiB to MiB) are carved from the heaps, and
    what they leave free stays in the process. Measured at 1000 SLAs (bench/RESULTS.md): 72-131
    MiB of the heaps free but held through the burst, 6-24 MiB with both thresholds held at 128
    KiB; peak RSS 279-335 MiB in four runs against 356 and 446 MiB in two without."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MALLOC_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, MALLOC_THRESHOLD)
    )


def run(*, verbose: bool = False) -> None:
    without_unused_clients()
    return_freed_memory()
    import kopf

    from aiconn.operator.settings import OperatorSettings

    settings = OperatorSettings()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    import aiconn.operator.handlers  # noqa: F401  (registers the handlers)

    namespaces = settings.namespaces or None
    asyncio.run(
        kopf.operator(
            clusterwide=namespaces is None,
            namespaces=namespaces or [],
            standalone=True,
            liveness_endpoint=(
                f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
            ),
        )
    )
