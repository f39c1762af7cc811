"""The retry backoff: exponential from its base, capped, and spread by jitter."""

from __future__ import annotations

from tasktide.v1 import task_pb2
from tasktide.worker._execute import backoff


def test_backoff_is_exponential_capped_and_jittered():
    policy = task_pb2.RetryPolicy(max_retries=10, backoff_base=1.0, backoff_max=5.0, jitter=False)
    assert [backoff(policy, n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    policy.jitter = True
    samples = [backoff(policy, 2) for _ in range(200)]
    assert all(0 <= s <= 4.0 for s in samples) and len(set(samples)) > 100
