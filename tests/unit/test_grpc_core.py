"""When a server process sets gRPC core up for serving (tasktide_services.common.grpc_core)."""

from __future__ import annotations

import pytest

from tasktide_services.common.grpc_core import EXPERIMENTS, VARIABLE, serving_env


def test_a_server_started_without_the_variable_is_started_again_with_it() -> None:
    env = serving_env({"PATH": "/bin"}, "1.85.3")
    assert env == {"PATH": "/bin", VARIABLE: EXPERIMENTS}
    assert EXPERIMENTS == "-event_engine_listener"


@pytest.mark.parametrize("value", ["", "-event_engine_listener", "event_engine_client"])
def test_a_value_set_by_the_operator_or_by_the_start_before_is_left_alone(value: str) -> None:
    """Also what ends the restarts: the process started again has the variable."""
    assert serving_env({VARIABLE: value}, "1.85.3") is None


@pytest.mark.parametrize(("version", "restarted"), [("1.84.0", False), ("1.85.1", True), ("1.100.0rc1", True)])
def test_a_grpc_older_than_the_first_version_known_to_have_the_switch_is_left_alone(
    version: str, restarted: bool
) -> None:
    assert (serving_env({}, version) is not None) is restarted
