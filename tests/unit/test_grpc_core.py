"""When a server process sets gRPC core up for serving (tasktide_services.common.grpc_core)."""

from __future__ import annotations

import pytest

from tasktide_services.common.grpc_core import EXPERIMENTS, FORK_VARIABLE, VARIABLE, serving_env


def test_a_server_started_without_the_variables_is_started_again_with_them() -> None:
    env = serving_env({"PATH": "/bin"}, "1.85.3")
    assert env == {"PATH": "/bin", VARIABLE: EXPERIMENTS, FORK_VARIABLE: "false"}
    assert EXPERIMENTS == "-event_engine_listener"


@pytest.mark.parametrize("value", ["", "-event_engine_listener", "event_engine_client"])
def test_a_value_set_by_the_operator_or_by_the_start_before_is_left_alone(value: str) -> None:
    """Also what ends the restarts: the process started again has both variables."""
    assert serving_env({VARIABLE: value, FORK_VARIABLE: "true"}, "1.85.3") is None
    assert serving_env({VARIABLE: value}, "1.85.3") == {VARIABLE: value, FORK_VARIABLE: "false"}
    assert serving_env({FORK_VARIABLE: "1"}, "1.85.3") == {FORK_VARIABLE: "1", VARIABLE: EXPERIMENTS}


@pytest.mark.parametrize(("version", "experiments"), [("1.84.0", False), ("1.85.1", True), ("1.100.0rc1", True)])
def test_a_grpc_older_than_the_first_version_known_to_have_the_switch_is_left_alone(
    version: str, experiments: bool
) -> None:
    env = serving_env({}, version)
    assert env is not None and (VARIABLE in env) is experiments
    again = serving_env({FORK_VARIABLE: "false"}, version)
    assert again == ({FORK_VARIABLE: "false", VARIABLE: EXPERIMENTS} if experiments else None)
