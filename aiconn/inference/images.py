"""Container images the operator deploys: the one place their versions are pinned.

The vLLM version is part of the measurement contract (metric names, histogram flags, CLI), so
it changes only together with the code that renders its arguments and reads its metrics.
"""

from __future__ import annotations

from aiconn import __version__

VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
AICONN_IMAGE = f"ghcr.io/aiconn/aiconn:{__version__}"
