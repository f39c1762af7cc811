"""Loading the Lua scripts of a service: one file, sections headed `--! name`.

Each section is one script. A section named `prelude` is not a script: it is put at the top of every
other section of its file, so the scripts of one file share local functions (and, where every
script takes the same KEYS, their binding to named locals). Above the prelude the loader writes
the file's constants, defined once in Python (`LuaFile.constants`, from the service's keys.py or
common/layout.py), as `local NAME = value` lines. A script as Redis runs it is thus: constants,
prelude, section; a line number in a Redis error counts from the top of that text.

Scripts run by SHA. A direct call (a pipeline of one) loads its script when Redis answers NOSCRIPT
(after a restart or a flush). In a pipeline the call is queued as a bare EVALSHA, with no per-pipeline SCRIPT EXISTS
round trip; `run_pipeline` loads every script and retries once when Redis has lost them
(`run_blocking_pipeline` the same on a blocking client, for submissions made in a caller's process:
scheduler/direct.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

# The builders of the stores (build_*) write onto either kind of pipeline.
AnyPipeline = Pipeline | redis.client.Pipeline


class Script:
    def __init__(self, redis: Redis | None, source: str) -> None:
        self.redis = redis  # None: the script is only queued on pipelines
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[Any], client: AnyPipeline | None = None) -> Any:
        if client is not None:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        return self._run(keys, args)

    async def _run(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        # A pipeline of one: with the services' client it goes over the shared link (redis_link.py).
        if self.redis is None:
            raise TypeError("this script was loaded for pipelines only")
        (reply,) = await run_pipeline(self.redis, lambda pipe: self(keys, args, client=pipe), {self.sha: self})
        return reply


PRELUDE = "prelude"
_PLAIN = re.compile(r"[\w|:.-]*")  # what a string constant may hold: written in Lua between quotes as is


def _lua_value(value: int | str) -> str:
    if isinstance(value, int):
        return str(value)
    if not _PLAIN.fullmatch(value):
        raise ValueError(f"a Lua string constant holds letters, digits and _|:.- only, not {value!r}")
    return f"'{value}'"


@dataclass(frozen=True)
class LuaFile:
    """A service's scripts.lua and the constants its scripts read as locals."""

    path: Path
    constants: Mapping[str, int | str] = field(default_factory=dict)

    def sections(self) -> dict[str, str]:
        """Section name -> its lines (the text before the first section, a comment, is dropped)."""
        out: dict[str, str] = {}
        name = ""
        lines: list[str] = []
        for line in [*self.path.read_text().splitlines(), "--! "]:
            if line.startswith("--! "):
                if name:
                    out[name] = "\n".join(lines)
                name, lines = line[4:].strip(), []
            else:
                lines.append(line)
        return out

    def sources(self) -> dict[str, str]:
        """Script name -> the source Redis runs: constants, prelude, section."""
        sections = self.sections()
        head = [f"local {name} = {_lua_value(value)}" for name, value in self.constants.items()]
        prelude = sections.pop(PRELUDE, "")
        return {name: "\n".join([*head, prelude, body]) for name, body in sections.items()}


def load_scripts(redis: Redis | None, file: LuaFile) -> dict[str, Script]:
    return {name: Script(redis, source) for name, source in file.sources().items()}


def _sources(scripts: tuple[Mapping[str, Script], ...]) -> list[str]:
    """Every script of every owner writing on a pipeline, to load after NOSCRIPT."""
    return [s.source for owner in scripts for s in owner.values()]


async def run_pipeline(redis: Redis, build: Callable[[Pipeline], None], *scripts: Mapping[str, Script]) -> list[Any]:
    """Build and execute a pipeline; if Redis lost the scripts (of every owner that writes on it),
    load them and run it again. Only commands that are safe to repeat may stand beside the scripts
    (NOSCRIPT means no script ran). A cluster client is told the scripts, to load one on the
    node that lacks it and run only that call again (common/redis_cluster.py)."""
    remember = getattr(redis, "remember_scripts", None)
    if remember is not None:
        remember(scripts)
    for attempt in (1, 2):
        async with redis.pipeline(transaction=False) as pipe:
            build(pipe)
            try:
                return await pipe.execute()  # type: ignore[no-any-return]
            except NoScriptError:
                if attempt == 2:
                    raise
                for source in _sources(scripts):
                    await redis.script_load(source)
    raise AssertionError("unreachable")


def run_blocking_pipeline(
    client: redis.Redis, build: Callable[[redis.client.Pipeline], None], *scripts: Mapping[str, Script]
) -> list[Any]:
    """`run_pipeline` on a blocking client."""
    for attempt in (1, 2):
        with client.pipeline(transaction=False) as pipe:
            build(pipe)
            try:
                return pipe.execute()
            except NoScriptError:
                if attempt == 2:
                    raise
                for source in _sources(scripts):
                    client.script_load(source)
    raise AssertionError("unreachable")
