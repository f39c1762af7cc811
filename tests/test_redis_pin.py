"""services/common/redis_link.py builds on redis-py internals (its private parser and reply
callbacks, the asyncio Pipeline's constructor and command stack). pyproject.toml pins redis-py to
the major the link was written for; these tests fail with a clear message when another major is
installed or an internal the link uses has moved, instead of the link breaking at run time."""

from __future__ import annotations

import inspect
import re
import tomllib

import redis
import redis.client
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import ConnectionPool

from tests.conftest import ROOT

WHY = "services/common/redis_link.py relies on redis-py internals"


def _pinned_major() -> int:
    """The major allowed by the root pyproject.toml's `redis` requirement (">=N.x,<N+1")."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (req,) = [d for d in deps if re.match(r"redis\b", d)]
    upper = re.search(r"<\s*(\d+)\b", req)
    assert upper is not None, f"the redis requirement {req!r} has no upper bound; {WHY}"
    return int(upper.group(1)) - 1


def test_the_installed_redis_py_is_the_major_the_link_was_written_for():
    major = int(redis.__version__.split(".")[0])
    pinned = _pinned_major()
    assert major == pinned, (
        f"redis-py {redis.__version__} is installed, but {WHY} and was written for {pinned}.x "
        f"(pyproject.toml: <{pinned + 1}). Check those internals against the new major "
        "(tests/test_redis_pin.py lists them), then move the bound."
    )


def test_the_internals_the_link_uses_are_there():
    from redis._parsers.base import BaseParser
    from redis._parsers.response_callbacks import get_response_callbacks

    missing = []
    if not callable(getattr(BaseParser, "parse_error", None)):
        missing.append("redis._parsers.base.BaseParser.parse_error")
    if list(inspect.signature(get_response_callbacks).parameters) != ["user_protocol", "legacy_responses"]:
        missing.append("redis._parsers.response_callbacks.get_response_callbacks(user_protocol, legacy_responses)")
    for name in ("EMPTY_RESPONSE", "NEVER_DECODE", "CaseInsensitiveDict"):
        if not hasattr(redis.client, name):
            missing.append(f"redis.client.{name}")
    params = list(inspect.signature(Pipeline.__init__).parameters)
    if params != ["self", "connection_pool", "response_callbacks", "transaction", "shard_hint"]:
        missing.append(f"redis.asyncio.client.Pipeline.__init__{tuple(params)}")
    pipe = Pipeline(ConnectionPool(), {}, False, None)
    for attr in ("command_stack", "response_callbacks", "raise_first_error"):
        if not hasattr(pipe, attr):
            missing.append(f"redis.asyncio.client.Pipeline.{attr}")
    pool = ConnectionPool()
    for attr in ("connection_kwargs", "connection_class"):
        if not hasattr(pool, attr):
            missing.append(f"redis.asyncio.connection.ConnectionPool.{attr}")
    assert not missing, f"{WHY}; missing or changed in redis-py {redis.__version__}: {', '.join(missing)}"
