"""The sleep of the idle loops (common/alarm.py): until the next due time, woken by this process."""

from __future__ import annotations

import asyncio
import math

from tasktide_services.common.alarm import Alarm, wall_ms


def test_a_time_notified_earlier_wakes_the_sleeper_and_a_later_one_does_not() -> None:
    async def main() -> None:
        alarm = Alarm()
        sleeper = asyncio.ensure_future(alarm.sleep_until(math.inf, 3600))
        await asyncio.sleep(0.05)
        alarm.notify(wall_ms() + 3_600_000)  # later than nothing known: it still sleeps its hour
        await asyncio.sleep(0.05)
        assert not sleeper.done()
        alarm.notify(wall_ms())  # due now
        await asyncio.wait_for(sleeper, 30)  # a guard against a hang, not a bound on the wake-up
        # The hint reached is forgotten: the next sleep lasts until its own time.
        again = asyncio.ensure_future(alarm.sleep_until(math.inf, 3600))
        await asyncio.sleep(0.05)
        assert not again.done()
        again.cancel()

    asyncio.run(main())


def test_the_sleep_ends_at_its_time_or_after_the_longest_wait() -> None:
    async def main() -> None:
        alarm = Alarm()
        started = wall_ms()
        await asyncio.wait_for(alarm.sleep_until(started + 100, 3600), 30)
        assert wall_ms() >= started + 100
        started = wall_ms()
        await asyncio.wait_for(alarm.sleep_until(math.inf, 0.1), 30)
        assert wall_ms() >= started + 100

    asyncio.run(main())


def test_a_loop_sleeps_until_its_earliest_next_step_even_when_notified() -> None:
    async def main() -> None:
        alarm = Alarm()
        started = wall_ms()
        alarm.notify(started)  # due now, but the loop's last step was just now
        await asyncio.wait_for(alarm.sleep_until(math.inf, 3600, earliest=started + 100), 30)
        assert wall_ms() >= started + 100

    asyncio.run(main())
