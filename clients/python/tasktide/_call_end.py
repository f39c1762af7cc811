"""How the AsyncClient's streams end a call their own task no longer reads.

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
import contextlib

import grpc

SETTLE_SECONDS = 0.25


async def end_call(call: grpc.aio.Call) -> None:
    """Cancel `call` and wait SETTLE_SECONDS for gRPC to deliver what its operations became
    (also when it is cancelled already: gRPC's own tasks cancel it as the loop ends)."""
    if call.done() and not call.cancelled():
        return  # ended by its status: nothing of it is left to deliver
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(SETTLE_SECONDS)
