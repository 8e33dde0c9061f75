"""The operator gives the memory of its large freed answers back (`return_freed_memory`)."""

from __future__ import annotations

import subprocess
import sys

# A child process of its own: glibc's thresholds are process-wide and move with what it frees.
PROBE = """
import ctypes, sys
from aiconn.operator.run import return_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert return_freed_memory()
first = bytearray(8 << 20)  # a large answer, mapped on its own; freeing it moves glibc's threshold
del first
answers, kept = [], []
for _ in range(64):  # 32 MiB of half-MiB answers, each followed by a small long-lived block
    answers.append(bytearray(512 << 10))
    kept.append(bytearray(2048))
del answers
print(libc.mallinfo2().fordblks >> 20)  # MiB free in the heaps, still the process's
"""


def free_held_mib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, timeout=60
    )
    return int(done.stdout)


def test_large_freed_answers_do_not_stay_in_the_operators_heap() -> None:
    """By default glibc, having freed one 8 MiB block, carves the next half-MiB answers from its
    heap, and the small blocks allocated between them keep what they leave from being returned:
    32 MiB stay held. With the operator's fixed thresholds each answer is mapped on its own and
    unmapped when freed."""
    assert free_held_mib("default") >= 24
    assert free_held_mib("fixed") <= 4
