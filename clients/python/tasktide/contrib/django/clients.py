"""One client per platform address for the whole process, made on first use.

Django creates a task backend per thread; they share these clients (gRPC channels are thread-safe).
asyncio channels belong to one event loop, so async clients are kept per loop. Django may run an
async view on an event loop of its own (an async view under WSGI, async_to_sync), which ends with
the request and nobody closes its client: so an async client makes a Submit call per task, and
keeps no stream open that would outlive its loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

from tasktide._async_client import AsyncClient
from tasktide._client import Client
from tasktide._settings import ClientSettings

_lock = threading.Lock()
_sync: dict[ClientSettings, Client] = {}
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ClientSettings, AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def sync_client(settings: ClientSettings) -> Client:
    client = _sync.get(settings)
    if client is None:
        with _lock:
            client = _sync.get(settings)
            if client is None:
                client = _sync[settings] = Client(settings=settings)
    return client


def async_client(settings: ClientSettings) -> AsyncClient:
    """The AsyncClient for `settings` on the running event loop."""
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _async.setdefault(loop, {})
        client = per_loop.get(settings)
        if client is None:
            client = per_loop[settings] = AsyncClient(settings=settings, transport="unary")
    return client
