"""The services' Lua files as the loader puts them together (common/lua.py): constants, prelude,
section; every section documents and binds its KEYS and ARGV; every script compiles in Redis."""

from __future__ import annotations

import pytest
import redis

from tasktide.v1 import task_pb2
from tasktide_services.common.layout import FIRST_FINAL_STATE, LAST_FINAL_STATE, is_final
from tasktide_services.common.lua import PRELUDE, LuaFile
from tasktide_services.results.store import SCRIPTS as RESULTS_SCRIPTS
from tasktide_services.scheduler.store import SCRIPTS as SCHEDULER_SCRIPTS
from tasktide_services.worker import keys as registry_keys
from tasktide_services.worker.store import SCRIPTS as REGISTRY_SCRIPTS

FILES = {"scheduler": SCHEDULER_SCRIPTS, "registry": REGISTRY_SCRIPTS, "results": RESULTS_SCRIPTS}


@pytest.mark.parametrize("service", FILES)
def test_each_section_opens_with_its_keys_and_argv(service: str) -> None:
    for name, body in FILES[service].sections().items():
        if name == PRELUDE:
            continue
        header = body.lstrip("\n").split("\n", 1)[0]
        assert header.startswith("-- KEYS: ") and " ARGV: " in body, f"{service}: {name}"
        assert "KEYS[" in body or "the queue's (prelude)" in header, f"{service}: {name} binds no KEYS"


@pytest.mark.parametrize("service", FILES)
def test_every_script_compiles(service: str, redis_server) -> None:
    with redis.Redis.from_url(redis_server.url) as r:
        for name, source in FILES[service].sources().items():
            assert r.script_load(source), name


def test_constants_and_prelude_come_before_each_section(tmp_path, redis_server) -> None:
    path = tmp_path / "scripts.lua"
    path.write_text("-- a file\n--! prelude\nlocal function two() return 2 end\n--! one\nreturn ONE + two()\n")
    (source,) = LuaFile(path, {"ONE": 1, "SEP": "|"}).sources().values()
    assert source.split("\n") == [
        "local ONE = 1",
        "local SEP = '|'",
        "local function two() return 2 end",
        "return ONE + two()",
    ]
    with redis.Redis.from_url(redis_server.url) as r:
        assert r.eval(source, 0) == 3
    with pytest.raises(ValueError, match="letters, digits"):
        LuaFile(path, {"BAD": "it's"}).sources()


def test_a_script_carries_the_prelude_functions_it_calls_and_no_other(tmp_path, redis_server) -> None:
    path = tmp_path / "scripts.lua"
    path.write_text(
        "--! prelude\n"
        "local k = KEYS[1]\n"
        "-- one, for two\n"
        "local function one() return 1 end\n"
        "-- two: one plus one\n"
        "local function two()\n"
        "  return one() + one()\n"
        "end\n"
        "local function unused(x)\n"
        "  return x\n"
        "end\n"
        "--! sum\n"
        "-- unused() is named in a comment only\n"
        "return two() + 1\n"
        "--! none\n"
        "return 0\n"
    )
    sources = LuaFile(path).sources()
    assert sources["sum"].split("\n") == [
        "local k = KEYS[1]",
        "-- one, for two",
        "local function one() return 1 end",
        "-- two: one plus one",
        "local function two()",
        "  return one() + one()",
        "end",
        "-- unused() is named in a comment only",
        "return two() + 1",
    ]
    assert sources["none"].split("\n") == ["local k = KEYS[1]", "return 0"]
    with redis.Redis.from_url(redis_server.url) as r:
        assert r.eval(sources["sum"], 1, "k") == 3


def test_the_registry_scripts_read_the_score_base_from_python() -> None:
    for source in REGISTRY_SCRIPTS.sources().values():
        assert source.startswith(f"local BAND_BASE = {registry_keys.BAND_BASE}\n")
    assert registry_keys.score_band(registry_keys.band_start(200) + 12345) == 200
    assert registry_keys.band(100) == 0 and registry_keys.band(-100) == 200


def test_a_task_value_opens_with_its_band_in_three_digits() -> None:
    """What the scripts read (string.sub(value, 1, BAND_DIGITS)), for every priority."""
    for priority in range(-100, 101):
        task = task_pb2.Task(id="a" * 32, spec=task_pb2.TaskSpec(name="t", priority=priority))
        value = registry_keys.task_value(task)
        assert value[: registry_keys.BAND_DIGITS] == b"%03d" % registry_keys.band(priority)
        assert registry_keys.task_of(value) == task


def test_final_states_are_succeeded_to_dead() -> None:
    assert [s for s in range(12) if is_final(s)] == list(range(FIRST_FINAL_STATE, LAST_FINAL_STATE + 1))
    assert (FIRST_FINAL_STATE, LAST_FINAL_STATE) == (5, 9)
