"""A SubmitStream served by a test's own handler: what a client does with a scheduler that answers
as the test says (an older one, one with a malformed announcement)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

from tasktide.v1 import scheduler_pb2


@contextlib.contextmanager
def serve_submit_stream(answer: Callable[[Any, grpc.ServicerContext], Iterator[Any]]) -> Iterator[str]:
    """`answer(requests, context)` serves SubmitStream on loopback; yields its address."""
    handler = grpc.method_handlers_generic_handler(
        "tasktide.v1.Scheduler",
        {
            "SubmitStream": grpc.stream_stream_rpc_method_handler(
                answer,
                request_deserializer=scheduler_pb2.SubmitStreamRequest.FromString,
                response_serializer=scheduler_pb2.SubmitStreamResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((handler,))
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    try:
        yield address
    finally:
        server.stop(None)
