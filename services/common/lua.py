"""Loading the Lua scripts of a service: one file, sections headed `--! name`."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def load_scripts(redis: Redis, path: Path) -> dict[str, AsyncScript]:
    scripts: dict[str, AsyncScript] = {}
    name = ""
    lines: list[str] = []
    for line in [*path.read_text().splitlines(), "--! "]:
        if line.startswith("--! "):
            if name:
                scripts[name] = redis.register_script("\n".join(lines))
            name, lines = line[4:].strip(), []
        else:
            lines.append(line)
    return scripts
