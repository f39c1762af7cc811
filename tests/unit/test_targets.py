"""Address settings naming several replicas: the gRPC target and balancing each becomes, and a clear
ConfigurationError for a list gRPC could not use (checked before any connection is made)."""

from __future__ import annotations

import pytest

import tasktide
from tasktide._targets import ROUND_ROBIN, parse


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("dns:///tasktide-scheduler.ns.svc:50051", "dns:///tasktide-scheduler.ns.svc:50051"),
        ("10.0.0.5:1, 10.0.0.6:2", "ipv4:10.0.0.5:1,10.0.0.6:2"),
        ("[fd00::5]:1,[fd00::6]:1", "ipv6:[fd00::5]:1,[fd00::6]:1"),
        ("unix:/run/a.sock,unix:/run/b.sock", "unix:/run/a.sock,/run/b.sock"),
        ("unix:///run/a.sock,unix:///run/b.sock", "unix:/run/a.sock,/run/b.sock"),
        ("unix:/run/a.sock,/run/b.sock", "unix:/run/a.sock,/run/b.sock"),
        ("ipv4:10.0.0.5:1,10.0.0.6:2", "ipv4:10.0.0.5:1,10.0.0.6:2"),
        ("localhost:7,127.0.0.1:8", "ipv4:127.0.0.1:7,127.0.0.1:8"),
    ],
)
def test_an_address_setting_becomes_a_round_robin_target(address: str, target: str) -> None:
    got = parse(address)
    assert got.target == target
    assert ROUND_ROBIN in got.options


def test_one_plain_address_keeps_the_default_policy() -> None:
    """pick_first reconnects when the next call comes, so a call after a quick restart of the one
    server waits for the connection instead of failing while round_robin backs off."""
    for address in ("127.0.0.1:50051", "localhost:50051", "unix:/run/a.sock"):
        got = parse(address)
        assert (got.target, got.options) == (address, ())


def test_names_in_a_list_keep_the_first_one_as_the_tls_authority() -> None:
    assert ("grpc.default_authority", "localhost:7") in parse("localhost:7,localhost:8", tls=True).options
    assert not any(k == "grpc.default_authority" for k, _ in parse("localhost:7,localhost:8").options)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("", "empty"),
        ("10.0.0.5:1,", "an empty entry"),
        ("10.0.0.5:1,,10.0.0.6:1", "an empty entry"),
        ("unix:/a.sock,10.0.0.5:1", "cannot be mixed"),
        ("10.0.0.5:1,[fd00::6]:1", "IPv4 and IPv6"),
        ("10.0.0.5,10.0.0.6:1", "not HOST:PORT"),
        ("10.0.0.5:99999,10.0.0.6:1", "not HOST:PORT"),
        ("dns:///a:1,dns:///b:1", "give it alone"),
        ("no-such-host.invalid:1,10.0.0.6:1", "cannot resolve"),
    ],
)
def test_a_list_grpc_could_not_use_is_refused_clearly(address: str, why: str) -> None:
    with pytest.raises(tasktide.ConfigurationError, match=why):
        parse(address)


def test_a_client_refuses_a_bad_list_before_connecting() -> None:
    settings = tasktide.ClientSettings.from_env({"TASKTIDE_ADDRESS": "10.0.0.5:1,[fd00::6]:1"})
    with pytest.raises(tasktide.ConfigurationError, match="IPv4 and IPv6"):
        tasktide.Client(settings=settings)
