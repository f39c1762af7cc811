"""New ids for tasks and workflows: 32 lowercase hex characters, random, in the form of
a version-4 UUID's hex (what `uuid.uuid4().hex` gives, which validate.TASK_ID accepts).

`new_ids(n)` draws the randomness of n ids with one `os.urandom` call: a batch of 1,000 tasks
costs one system call, not 1,000.
"""

from __future__ import annotations

import os

# The character at position 16 of a version-4 UUID's hex holds the variant (binary 10xx): 8, 9, a, b.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_ids(n: int) -> list[str]:
    """n new ids, from one draw of 16 random bytes per id."""
    raw = os.urandom(16 * n).hex()
    return [
        f"{raw[i : i + 12]}4{raw[i + 13 : i + 16]}{_VARIANT[raw[i + 16]]}{raw[i + 17 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def new_id() -> str:
    """One new id."""
    return new_ids(1)[0]
