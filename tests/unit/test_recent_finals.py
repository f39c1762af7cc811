"""What a results process keeps of the final results it wrote (services/results/recent.py): bounded
by count, by bytes together, by the size of one result and by age."""

from __future__ import annotations

import time

from tasktide_services.results.recent import RecentFinals


def test_the_oldest_go_first_beyond_the_count_or_the_bytes():
    kept: RecentFinals[str] = RecentFinals(seconds=60, count=3, size=100, value_size=60)
    for key in "abcd":
        kept.put(key, key.upper(), 10)
    assert kept.get(list("abcd")) == {"b": "B", "c": "C", "d": "D"}
    kept.put("e", "E", 60)  # 90 bytes with c and d; b goes for the count
    assert kept.get(list("bcde")) == {"c": "C", "d": "D", "e": "E"} and kept.bytes == 80
    kept.put("f", "F", 30)  # 110 bytes: c goes, then 100 is within
    assert len(kept) == 3 and kept.bytes == 100 and "c" not in kept.get(["c"])


def test_a_result_over_the_size_of_one_is_not_kept_and_replaces_nothing_stale():
    kept: RecentFinals[str] = RecentFinals(seconds=60, count=10, size=1000, value_size=50)
    kept.put("a", "small", 10)
    kept.put("a", "large", 51)  # a new result for the same key: the old one is not handed out
    assert kept.get(["a"]) == {} and kept.bytes == 0


def test_dropped_and_aged_results_are_gone():
    kept: RecentFinals[int] = RecentFinals(seconds=0.2, count=10, size=1000, value_size=100)
    kept.put("a", 1, 5)
    kept.put("b", 2, 5)
    kept.drop("a")
    assert kept.get(["a", "b"]) == {"b": 2} and kept.bytes == 5
    time.sleep(0.25)
    assert kept.get(["b"]) == {} and len(kept) == 0 and kept.bytes == 0
