"""A model directory made here is readable by the inference pod's non-root user (65532)."""

from __future__ import annotations

import stat
from pathlib import Path

from aiconn.devstack.vllm import readable_by_all


def test_weights_written_private_become_readable_by_all(tmp_path: Path) -> None:
    model = tmp_path / "tiny-llama"
    (model / "sub").mkdir(parents=True)
    weights = model / "model.safetensors"
    weights.write_bytes(b"weights")
    weights.chmod(0o600)  # as safetensors writes it
    (model / "sub").chmod(0o700)
    model.chmod(0o700)

    readable_by_all(model)

    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
    assert stat.S_IMODE((model / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE(model.stat().st_mode) == 0o755
