"""How the clients' streams end a call they no longer read.

The blocking Client's streams are read by a thread each (_submitter.py, _following.py). Such a
thread is a daemon; one still inside a call when the interpreter exits may hold the call's lock,
frozen there, while the garbage collection at exit runs the call's finalizer, which waits for that
lock for ever: the process prints its result and never ends. gRPC's own threads (the channel's,
which delivers each call's events under that lock) are daemons too. So closing a client waits for
its readers to end (`join_reader`), cancelling a call whose service has not ended it in time, and
at exit the garbage is collected once (an atexit hook), while every thread still runs, so that no
call's finalizer is left for the collection after the daemon threads have stopped.

A stream's task is cancelled when its client closes, when the stream is replaced, and when the
event loop ends with the client still open: `asyncio.run` (and loops like asgiref's) cancel every
task left, then close the loop. gRPC delivers the outcome of a cancelled call's operations a moment
later, from its poller thread, to the call's loop; one that arrives after that loop closed is
handed over by the next event loop of the process to the closed one, and reported there as "Event
loop is closed". So the task cancels the call itself and keeps the loop turning for SETTLE_SECONDS,
time for those outcomes to arrive, before it ends. gRPC offers nothing to await them by (the
futures of the operations were cancelled with the task), so this is a time: 10 ms sufficed on a
quiet machine, 100 ms still missed a few loop ends in 600 on a loaded machine with two cores,
250 ms missed none in several hundred. A client closed before its loop ends pays none of it: its
streams end with the service (half-closed, then read to their status).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import threading
from typing import Protocol

import grpc

SETTLE_SECONDS = 0.25
JOIN_SECONDS = 2.0  # a blocking stream's service ends it in that time, or the call is cancelled


atexit.register(gc.collect)  # module doc: calls finalized while gRPC's threads still run


class _Cancellable(Protocol):
    def cancel(self) -> bool: ...


async def end_call(call: grpc.aio.Call) -> None:
    """Cancel `call` and wait SETTLE_SECONDS for gRPC to deliver what its operations became
    (also when it is cancelled already: gRPC's own tasks cancel it as the loop ends)."""
    if call.done() and not call.cancelled():
        return  # ended by its status: nothing of it is left to deliver
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(SETTLE_SECONDS)


def join_reader(reader: threading.Thread | None, call: _Cancellable | None, seconds: float = JOIN_SECONDS) -> None:
    """Wait for a blocking stream's reader thread to end (module doc). The caller has ended the
    stream (half-closed or cancelled it); after `seconds`, `call` is cancelled and the thread
    waited for once more."""
    if reader is None or reader is threading.current_thread():
        return
    reader.join(seconds)
    if reader.is_alive() and call is not None:
        call.cancel()
        reader.join(seconds)
