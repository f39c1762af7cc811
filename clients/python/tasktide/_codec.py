"""Encoding of payloads and errors as JSON text: data only, nothing that runs when read."""

from __future__ import annotations

import json
import time
import traceback as tb
from typing import Any

from tasktide._exceptions import ConfigurationError
from tasktide.v1 import task_pb2

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def now_ms() -> int:
    return int(time.time() * 1000)


def encode_json(value: Any) -> bytes:
    try:
        return _dumps(value).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"payload is not JSON-compatible: {exc}") from exc


def payload(value: Any) -> task_pb2.Payload:
    return task_pb2.Payload(json=encode_json(value))


def decode_payload(p: task_pb2.Payload, default: Any = None) -> Any:
    kind = p.WhichOneof("kind")
    if kind == "json":
        return json.loads(p.json) if p.json else default
    if kind == "message":
        return p.message
    return default


def error_from_exception(exc: BaseException) -> task_pb2.TaskError:
    cls = type(exc)
    module = cls.__module__
    qualname = cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    return task_pb2.TaskError(
        type=qualname,
        message=str(exc),
        traceback="".join(tb.format_exception(cls, exc, exc.__traceback__)),
    )
