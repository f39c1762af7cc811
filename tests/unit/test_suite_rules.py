"""The rules the suite holds itself to: under CI=true a skip fails; an exception that escapes a
thread, or ends a worker thread, fails the test; eventually() waits on a state and says which one
it missed."""

from __future__ import annotations

import threading

import pytest

from tasktide_services.testing import eventually, run_worker_thread
from tests.tasks_app import app

PLUGIN = "-p", "tasktide_services.testing"


def test_a_skip_is_a_failure_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_skipped_in_the_body():
            pytest.skip("no tool")

        @pytest.mark.skip(reason="by mark")
        def test_skipped_by_a_mark():
            pass

        @pytest.fixture
        def tool():
            pytest.skip("no tool for the fixture")

        def test_skipped_by_a_fixture(tool):
            pass

        def test_runs():
            pass
        """
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=1, failed=1, errors=2)  # a skip in setup fails as an error of the setup
    result.stdout.fnmatch_lines(["*skipped under CI=true*no tool*"])
    monkeypatch.setenv("CI", "")
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1, skipped=3)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_exception_in_a_thread_fails_the_test(
    pytester: pytest.Pytester, thread_errors: list[threading.ExceptHookArgs]
) -> None:
    pytester.makepyfile(
        """
        import threading

        def test_callback_asserts():
            def callback():
                assert 1 == 2, "seen in a callback"

            t = threading.Thread(target=callback, name="stream-reader")
            t.start()
            t.join()
        """
    )
    result = pytester.runpytest(*PLUGIN, "-p", "no:threadexception")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*exception(s) escaped a thread; first in stream-reader*"])
    thread_errors.clear()  # the inner run shares this process: its thread's exception was seen here too


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_thread_errors_collects_what_escaped(thread_errors: list[threading.ExceptHookArgs]) -> None:
    t = threading.Thread(target=lambda: 1 / 0, name="doomed")
    t.start()
    t.join()
    assert [type(e.exc_value) for e in thread_errors] == [ZeroDivisionError]
    thread_errors.clear()  # seen and accounted for: the test itself does not fail


def test_run_worker_thread_raises_what_ended_the_worker() -> None:
    with pytest.raises(RuntimeError, match="did not start") as info:
        with run_worker_thread(app, "127.0.0.1:1", no_such_option=1):
            pass
    assert isinstance(info.value.__cause__, TypeError)


def test_eventually_returns_the_value_and_names_what_it_missed() -> None:
    calls = iter([0, None, "", 7])
    assert eventually(lambda: next(calls), interval=0) == 7
    with pytest.raises(AssertionError, match=r"the answer not reached within 0.05 s \(last value 0\)"):
        eventually(lambda: 0, timeout=0.05, interval=0.01, what="the answer")


def test_eventually_retries_an_assertion_and_raises_the_last_one() -> None:
    attempts = []

    def check() -> bool:
        attempts.append(1)
        assert len(attempts) >= 3, f"attempt {len(attempts)}"
        return True

    assert eventually(check, interval=0) is True

    def never() -> bool:
        raise AssertionError("never")

    with pytest.raises(AssertionError, match="never"):
        eventually(never, timeout=0.05, interval=0.01)
