"""The releases the tools/ scripts pin, read from the scripts themselves.

Each script (tools/*/build.sh, tools/vllm/install.sh) names the release it builds and the cache
directory it leaves it in, and the devstack looks for the result there. A second literal in Python
would let a bump in the script build one release while Python looks for the old one, so Python
reads the script's `NAME=value` line instead: the script is the one place a version is written.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiconn.devstack.processes import StackError

TOOLS = Path(__file__).resolve().parents[2] / "tools"
"""The repository's tools/ directory: the devstack runs from a checkout, never an installed
wheel (the image's `aiconn` runs the operator, API and gateway, which never import it)."""


def pinned(script: Path, variable: str) -> str:
    """The value of the `VARIABLE=value` line in `script` (a plain word, as the scripts write
    their versions: no quotes, no expansion)."""
    try:
        text = script.read_text()
    except OSError as err:
        raise StackError(f"cannot read {variable} from {script}: {err}") from err
    found = re.search(rf"^{re.escape(variable)}=(\S+)$", text, re.M)
    if found is None:
        raise StackError(f"no {variable} in {script}")
    return found.group(1)
