"""Loading the Lua scripts of a service: one file, sections headed `--! name`.

Each section is one script. A section named `prelude` is not a script: it is put at the top of every
other section of its file, so the scripts of one file share local functions (and, where every
script takes the same KEYS, their binding to named locals); of its `local function`s, each script
carries only those it calls (Redis builds a closure for each on every call). Above the prelude the loader writes
the file's constants, defined once in Python (`LuaFile.constants`, from the service's keys.py or
common/layout.py), as `local NAME = value` lines. A script as Redis runs it is thus: constants,
prelude, section; a line number in a Redis error counts from the top of that text.

Scripts run by SHA. Each service loads its stores' scripts when it starts (`preload`: one
pipeline of SCRIPT LOAD), so in steady state Redis has them all. Redis loses them when it restarts;
the services' client loads them again first on each new connection (common/redis_link.py, TLS
connections included), so after a restart no call of its pipelines answers NOSCRIPT. A flushed
Redis (SCRIPT FLUSH), or the blocking client of the direct path, does answer NOSCRIPT: then
`run_pipeline` loads the scripts of every owner
writing on the pipeline and runs again only the calls that answered NOSCRIPT, in their order,
keeping the other replies, so nothing that ran runs twice. A pipeline's scripts may be partly
loaded (another process reloaded its own), so after a Redis restart a pipeline's calls may run out
of their order once: those that ran first, then those that answered NOSCRIPT (e.g. a lease's
`complete` before the result's `record`). In a pipeline a call is queued as a bare EVALSHA, with no
per-pipeline SCRIPT EXISTS round trip; a direct call is a pipeline of one. `run_blocking_pipeline`
does the same on a blocking client, for submissions made in a caller's process
(scheduler/direct.py). On a Redis Cluster the client itself loads a script on the node that lacks
it and runs only that call again (common/redis_cluster.py).

A pipeline's commands run in their order on one Redis, so a script queued last sees the others
done. On a Redis Cluster the nodes' parts run at once; a script named in `LuaFile.last` (a write
that must only follow the others, such as confirming an idempotency key) is sent there once the
other parts have answered.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from tasktide_services.common.redis_link import NotRun

log = logging.getLogger("tasktide.lua")

# The builders of the stores (build_*) write onto either kind of pipeline.
AnyPipeline = Pipeline | redis.client.Pipeline


class Script:
    def __init__(self, redis: Redis | None, source: str, last: bool = False) -> None:
        self.redis = redis  # None: the script is only queued on pipelines
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.last = last  # on a cluster, sent once the rest of its pipeline has answered (module doc)
        # Its owner when called on its own: one mapping for every call. A cluster client keeps each
        # owner it is told of (`remember_scripts`); a new mapping per call would pile up there.
        self.alone: Mapping[str, Script] = {self.sha: self}

    def __call__(self, keys: Sequence[str], args: Sequence[Any], client: AnyPipeline | None = None) -> Any:
        if client is not None:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        return self._run(keys, args)

    async def _run(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        # A pipeline of one: with the services' client it goes over the shared link (redis_link.py).
        if self.redis is None:
            raise TypeError("this script was loaded for pipelines only")
        (reply,) = await run_pipeline(self.redis, lambda pipe: self(keys, args, client=pipe), self.alone)
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
    last: frozenset[str] = frozenset()  # scripts run after the rest of their pipeline (module doc)

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
        """Script name -> the source Redis runs: constants, prelude, section. Of the prelude's
        functions, a script carries those it calls (and those these call): each `local function`
        costs Redis a closure on every call of the script."""
        sections = self.sections()
        head = [f"local {name} = {_lua_value(value)}" for name, value in self.constants.items()]
        prelude = _prelude_parts(sections.pop(PRELUDE, ""))
        return {name: "\n".join([*head, *_used(prelude, body), body]) for name, body in sections.items()}


_FUNCTION = re.compile(r"local function (\w+)\(")
_COMMENT = re.compile(r"--.*$", re.MULTILINE)  # what a script's code calls is read without its comments


def _prelude_parts(prelude: str) -> list[tuple[str, str]]:
    """The prelude in parts, in order: (function name, its text with the comment lines just above
    it), or ("", other text). A function ends on its own line (`... end`) or at a line `end`."""
    parts: list[tuple[str, str]] = []
    comments: list[str] = []
    lines = prelude.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        found = _FUNCTION.match(line)
        if found:
            j = i
            if not line.rstrip().endswith(" end"):
                while lines[j] != "end":
                    j += 1
            parts.append((found.group(1), "\n".join([*comments, *lines[i : j + 1]])))
            comments, i = [], j + 1
            continue
        if line.startswith("--"):
            comments.append(line)
        else:
            parts.append(("", "\n".join([*comments, line])))
            comments = []
        i += 1
    if comments:
        parts.append(("", "\n".join(comments)))
    return parts


def _used(parts: list[tuple[str, str]], body: str) -> list[str]:
    """The texts of `parts` a script of `body` needs: every other text, and the functions the body
    calls or passes on (`pcall(f, ...)`), with those these need in turn."""
    need: set[str] = set()
    grew = True
    while grew:
        code = _COMMENT.sub("", "\n".join([body, *(text for name, text in parts if name in need)]))
        called = {name for name, _ in parts if name and re.search(rf"\b{name}\s*[(,)]", code)}
        grew = not called <= need
        need |= called
    return [text for name, text in parts if not name or name in need]


def load_scripts(redis: Redis | None, file: LuaFile) -> dict[str, Script]:
    return {name: Script(redis, source, name in file.last) for name, source in file.sources().items()}


def _sources(scripts: tuple[Mapping[str, Script], ...]) -> list[str]:
    """Every script of every owner writing on a pipeline, once each."""
    return list(dict.fromkeys(s.source for owner in scripts for s in owner.values()))


async def _execute(pipe: Pipeline, size: int) -> list[Any]:
    """The pipeline's replies, errors in place. The client's own transaction raises the error of a
    call refused as it was queued (EXECABORT): then no call ran, each answers so."""
    try:
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    except NoScriptError as exc:
        return [NoScriptError(str(exc))] + [NotRun(f"the transaction did not run: {exc}")] * (size - 1)
    return replies


def _lost(replies: list[Any]) -> list[int]:
    """The positions of the calls Redis answered NOSCRIPT (they did not run)."""
    return [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]


async def _load(redis: Redis, scripts: tuple[Mapping[str, Script], ...]) -> None:
    """SCRIPT LOAD of every script of `scripts`: one pipeline, or on a cluster each on every primary."""
    if getattr(redis, "remember_scripts", None) is not None:
        await asyncio.gather(*(redis.script_load(source) for source in _sources(scripts)))
        return
    async with redis.pipeline(transaction=False) as pipe:
        for source in _sources(scripts):
            pipe.script_load(source)
        await pipe.execute()


def _keep(redis: Redis, scripts: tuple[Mapping[str, Script], ...]) -> None:
    """Tell the client to load these scripts first on each new connection (redis_link.py)."""
    keep = getattr(redis, "keep_scripts", None)
    if keep is not None:
        keep((s.sha, s.source) for owner in scripts for s in owner.values())


async def preload(redis: Redis, *scripts: Mapping[str, Script]) -> None:
    """At a service's start: load its stores' scripts, so that in steady state no call answers
    NOSCRIPT. If Redis cannot be reached now, the failure is logged and each script is loaded
    when a call first answers NOSCRIPT (`run_pipeline`)."""
    remember = getattr(redis, "remember_scripts", None)
    if remember is not None:
        remember(scripts)
    _keep(redis, scripts)
    try:
        await _load(redis, scripts)
    except Exception:  # noqa: BLE001 - Redis away at startup: the NOSCRIPT path loads them later
        log.warning("loading the Lua scripts at startup failed; each is loaded when Redis lacks it", exc_info=True)


async def run_pipeline(
    redis: Redis, build: Callable[[Pipeline], None], *scripts: Mapping[str, Script], atomic: bool = False
) -> list[Any]:
    """Build and execute a pipeline. The calls Redis answers NOSCRIPT (it lost the scripts: a
    restart, a flush) did not run; the others did, and are not repeated: the scripts of every owner
    writing on the pipeline are loaded and only the NOSCRIPT calls run again, in their order, after
    the rest (module doc). An error reply is raised, as by the client's pipeline. A cluster client
    is told the scripts, to load one on the node that lacks it and run only that call again
    (common/redis_cluster.py).

    `atomic`: the pipeline is one transaction (MULTI/EXEC) where the client allows it (one Redis
    server; a cluster keeps the order of `Script.last` instead), so Redis runs all of it or, when the
    connection breaks before the whole of it has arrived, none. Its NOSCRIPT calls run again in a
    transaction of their own; one refused as a whole (no call ran) runs again whole."""
    remember = getattr(redis, "remember_scripts", None)
    if remember is not None:
        remember(scripts)
    transaction = atomic and getattr(redis, "transactions", True)
    async with redis.pipeline(transaction=transaction) as pipe:
        build(pipe)
        stack = list(pipe.command_stack)
        replies = await _execute(pipe, len(stack))
        lost = _lost(replies)
        if lost:
            _keep(redis, scripts)
            await _load(redis, scripts)
            if any(isinstance(r, NotRun) for r in replies):
                lost = list(range(len(stack)))
            pipe.command_stack = [stack[i] for i in lost]
            for i, reply in zip(lost, await _execute(pipe, len(lost)), strict=True):
                replies[i] = reply
        pipe.raise_first_error(stack, replies)
    return replies


def run_blocking_pipeline(
    client: redis.Redis, build: Callable[[redis.client.Pipeline], None], *scripts: Mapping[str, Script]
) -> list[Any]:
    """`run_pipeline` on a blocking client."""
    with client.pipeline(transaction=False) as pipe:
        build(pipe)
        stack = list(pipe.command_stack)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        lost = _lost(replies)
        if lost:
            for source in _sources(scripts):
                client.script_load(source)  # on a cluster, on every primary (redis_cluster_client.py)
            pipe.command_stack = [stack[i] for i in lost]
            for i, reply in zip(lost, pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        pipe.raise_first_error(stack, replies)
    return replies
