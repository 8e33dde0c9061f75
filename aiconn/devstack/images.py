"""Container images for the real node, built here by `tools/images/build.sh` (no registry is
reachable): the sandbox (pause) image, a Debian Python base, aiconn's own image and the CPU
build of vLLM. Each is an OCI archive whose index names only a tag; the repository it is
imported as comes from here. aiconn's image gets the name the manifests use (AICONN_IMAGE), so
they run unchanged; vLLM's the name `manifests/overlays/devcluster` gives the operator.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiconn.devstack.processes import StackError
from aiconn.inference.images import AICONN_IMAGE

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "images" / "build.sh"
REPOSITORIES = {
    "pause": "localhost/pause",
    "python": "localhost/python",
    "aiconn": AICONN_IMAGE.rsplit(":", 1)[0],
    "vllm": "localhost/vllm-cpu",
}


@dataclass(frozen=True)
class ImageArchive:
    path: Path
    repository: str


def build_images(*names: str) -> tuple[ImageArchive, ...]:
    """Build (or reuse the cached) archives of the named images; raise with the build's
    output when it fails."""
    result = subprocess.run(
        ["bash", str(BUILD), *names], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise StackError(f"building images {names} failed:\n{result.stderr[-3000:]}")
    paths = [Path(line) for line in result.stdout.split()]
    return tuple(ImageArchive(p, REPOSITORIES[n]) for n, p in zip(names, paths, strict=True))


def node_images(*, aiconn: bool = False, vllm: bool = False) -> tuple[ImageArchive, ...]:
    """What a real node needs: the sandbox image, aiconn's image when it runs aiconn, and vLLM's
    when it runs inference pods."""
    return build_images("pause", *(["aiconn"] if aiconn else []), *(["vllm"] if vllm else []))
