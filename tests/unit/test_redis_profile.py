"""bench/redis_profile.py groups perf's samples of Redis by what they are: Lua, the allocator,
data structures, the kernel, and the rest."""

from __future__ import annotations

import pytest

from bench.redis_profile import grouped

REPORT = """
# Samples: 1K of event 'cpu-clock:ppp'
#
     4.94%  [.] luaV_execute                               -      -
     4.78%  [.] luaS_newlstr                               -      -
     3.75%  [.] dictFind                                   -      -
     3.27%  [.] _int_malloc                                -      -
     2.79%  [k] finish_task_switch.isra.0                  -      -
     1.99%  [.] luaRedisGenericCommand                     -      -
     1.12%  [.] zslInsert                                  -      -
     0.80%  [.] aeProcessEvents                            -      -
     0.48%  [k] tcp_sendmsg_locked                         -      -
"""


def test_samples_are_grouped_by_what_they_are():
    shares = grouped(REPORT)
    assert shares == pytest.approx(
        {
            "Lua": 4.94 + 4.78 + 1.99,
            "data structures": 3.75 + 1.12,
            "allocator": 3.27,
            "kernel": 2.79 + 0.48,
            "the rest": 0.80,
        }
    )
