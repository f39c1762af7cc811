"""The worker's credit window: three tasks per slot to start, more while tasks are short, back down
when they grow long; a fixed --prefetch stays fixed; outcomes wait for company only while tasks are
short."""

from __future__ import annotations

from tasktide.worker._credit import LINGER_SECONDS, MAX_PER_SLOT, MIN_PER_SLOT, CreditWindow


def _run(window: CreditWindow, seconds: float, batches: int, size: int = 4) -> list[int]:
    grants = []
    for _ in range(batches):
        for _ in range(size):
            window.observe(seconds)
        grants.append(window.returned(size))
    return grants


def test_short_tasks_widen_the_window_up_to_its_cap():
    w = CreditWindow(concurrency=2)
    assert w.open() == 2 * (1 + MIN_PER_SLOT)
    grants = _run(w, 0.0001, 200)
    assert grants[0] > 4  # more than the outcomes returned: the window grows
    assert w.window == 2 * (1 + MAX_PER_SLOT)
    assert grants[-1] == 4  # at its size, each outcome is replaced one for one


def test_long_tasks_shrink_it_back_without_granting_more_than_returned():
    w = CreditWindow(concurrency=2)
    w.open()
    _run(w, 0.0001, 200)
    grants = _run(w, 2.0, 400)
    assert all(g <= 4 for g in grants)
    assert w.window == 2 * (1 + MIN_PER_SLOT)


def test_a_fixed_prefetch_is_kept():
    w = CreditWindow(concurrency=3, prefetch=1)
    assert w.open() == 4
    assert _run(w, 0.0001, 50) == [4] * 50
    assert w.window == 4


def test_outcomes_linger_for_company_only_while_tasks_are_short():
    w = CreditWindow(concurrency=2)
    assert w.linger() == 0.0  # nothing measured yet: an outcome leaves at once
    _run(w, 0.0001, 50)
    assert w.linger() == LINGER_SECONDS
    _run(w, 2.0, 200)
    assert w.linger() == 0.0


def test_a_new_session_counts_what_is_already_in_hand():
    w = CreditWindow(2, prefetch=2)  # target 4
    assert w.open(in_hand=3) == 1
    assert w.open(in_hand=6) == 0  # more in hand than the target (outcomes still to write): nothing more
    assert [w.returned(1) for _ in range(3)] == [0, 0, 1]  # the window shrinks back to the target, then holds
