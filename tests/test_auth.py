"""Tokens and roles on a platform with TASKTIDE_AUTH_KEY: every RPC but health checking needs a token,
each role reaches exactly the RPCs the role table gives it, and bad tokens get UNAUTHENTICATED."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tasktide.v1 import results_pb2, scheduler_pb2, task_pb2, worker_pb2, workflow_pb2
from tasktide_services.common.auth import mint
from tasktide_services.common.roles import allowed_roles
from tasktide_services.common.settings import ServerSettings
from tasktide_services.externalscaler import externalscaler_pb2
from tasktide_services.testing import PlatformThread

KEY = b"k" * 40
DESCRIPTORS = [
    scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"],
    worker_pb2.DESCRIPTOR.services_by_name["Registry"],
    results_pb2.DESCRIPTOR.services_by_name["Results"],
    workflow_pb2.DESCRIPTOR.services_by_name["Workflows"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    externalscaler_pb2.DESCRIPTOR.services_by_name["ExternalScaler"],
]
OPEN = ("Health", "ExternalScaler")  # roles.OPEN_PREFIXES: probes, KEDA's scaler (not served here)
METHODS: list[MethodDescriptor] = [m for d in DESCRIPTORS for m in d.methods]
DENIED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def _full(m: MethodDescriptor) -> str:
    return f"/{m.containing_service.full_name}/{m.name}"


@pytest.fixture(scope="module")
def revoked_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "revoked"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def secured(server_settings: ServerSettings, revoked_file: Path) -> Iterator[PlatformThread]:
    settings = replace(server_settings, auth_key=KEY.decode(), auth_revoked=str(revoked_file))
    with PlatformThread(settings) as p:
        yield p


def call(address: str, m: MethodDescriptor, token: str | None, timeout: float = 1.5) -> grpc.StatusCode:
    """Call `m` with an empty request (and `token`); the status it ends with (OK included)."""
    metadata = [("authorization", f"Bearer {token}")] if token is not None else None
    with grpc.insecure_channel(address) as ch:
        path = _full(m)
        try:
            if m.client_streaming and m.server_streaming:
                for _ in ch.stream_stream(path)(iter([b""]), timeout=timeout, metadata=metadata):
                    break
            elif m.server_streaming:
                for _ in ch.unary_stream(path)(b"", timeout=timeout, metadata=metadata):
                    break
            else:
                ch.unary_unary(path)(b"", timeout=timeout, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def health_ok(code: grpc.StatusCode) -> bool:
    return code == grpc.StatusCode.OK


def test_every_method_is_in_the_role_table() -> None:
    table = allowed_roles()
    missing = [_full(m) for m in METHODS if m.containing_service.name not in OPEN and _full(m) not in table]
    assert missing == []


def test_no_token_is_unauthenticated_everywhere_but_health(secured: PlatformThread) -> None:
    answers = {_full(m): call(secured.address, m, None) for m in METHODS}
    open_ = {_full(m): answers[_full(m)] for m in METHODS if m.containing_service.name in OPEN}
    others = {k: v for k, v in answers.items() if k not in open_}
    assert len(others) >= 30
    assert {k: v for k, v in others.items() if v != grpc.StatusCode.UNAUTHENTICATED} == {}
    assert health_ok(answers["/grpc.health.v1.Health/Check"])
    assert grpc.StatusCode.UNAUTHENTICATED not in open_.values()


@pytest.mark.parametrize("role", ["producer", "worker", "admin", "service"])
def test_role_matrix(secured: PlatformThread, role: str) -> None:
    token = mint(KEY, namespace="default", role=role)
    table = allowed_roles()
    wrong: dict[str, str] = {}
    for m in METHODS:
        path = _full(m)
        if path not in table:
            continue
        code = call(secured.address, m, token)
        expected_allowed = role in table[path]
        if expected_allowed and code in DENIED:
            wrong[path] = f"refused: {code.name}"
        elif not expected_allowed and code != grpc.StatusCode.PERMISSION_DENIED:
            wrong[path] = f"answered {code.name}, expected PERMISSION_DENIED"
    assert wrong == {}


def test_producer_cannot_forge_results_or_stages(secured: PlatformThread) -> None:
    token = mint(KEY, namespace="default", role="producer")
    md = [("authorization", f"Bearer {token}")]
    forged = task_pb2.TaskEvent(task_id="a" * 32, state=task_pb2.TASK_STATE_SUCCEEDED, reopen=True)
    with grpc.insecure_channel(secured.address) as ch:
        from tasktide.v1 import results_pb2_grpc, scheduler_pb2_grpc, workflow_pb2_grpc

        calls = [
            lambda: results_pb2_grpc.ResultsStub(ch).Record(results_pb2.RecordRequest(events=[forged]), metadata=md),
            lambda: scheduler_pb2_grpc.SchedulerStub(ch).Retry(scheduler_pb2.RetryRequest(), metadata=md),
            lambda: workflow_pb2_grpc.WorkflowsStub(ch).Completed(workflow_pb2.CompletedRequest(), metadata=md),
        ]
        for fn in calls:
            with pytest.raises(grpc.RpcError) as info:
                fn()
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "not allowed for role producer" in info.value.details()


def test_a_producer_cannot_place_a_task_in_a_workflow(secured: PlatformThread) -> None:
    """The workflow headers are the platform's: a plain task posing as a workflow's member would
    move that workflow on when it succeeds."""
    from tasktide.v1 import scheduler_pb2_grpc

    md = [("authorization", f"Bearer {mint(KEY, namespace='default', role='producer')}")]
    with grpc.insecure_channel(secured.address) as ch:
        stub = scheduler_pb2_grpc.SchedulerStub(ch)
        for header in ("tasktide-workflow", "tasktide-stage", "tasktide-member"):
            spec = task_pb2.TaskSpec(name="auth.noop", queue="auth-forge", headers={header: "0"})
            with pytest.raises(grpc.RpcError) as info:
                stub.Submit(scheduler_pb2.SubmitRequest(spec=spec), metadata=md)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == f"header {header!r} is set by the platform only"
        plain = task_pb2.TaskSpec(name="auth.noop", queue="auth-forge", headers={"mine": "1"})
        assert len(stub.Submit(scheduler_pb2.SubmitRequest(spec=plain), metadata=md).task_id) == 32


def _submit_code(address: str, token: str) -> tuple[grpc.StatusCode, str]:
    from tasktide.v1 import scheduler_pb2_grpc

    spec = task_pb2.TaskSpec(name="auth.noop", queue="auth-none")
    with grpc.insecure_channel(address) as ch:
        try:
            scheduler_pb2_grpc.SchedulerStub(ch).Submit(
                scheduler_pb2.SubmitRequest(spec=spec), metadata=[("authorization", f"Bearer {token}")]
            )
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def test_bad_tokens_are_unauthenticated_with_a_reason(secured: PlatformThread, revoked_file: Path) -> None:
    address = secured.address
    assert _submit_code(address, mint(KEY, namespace="default", role="producer"))[0] == grpc.StatusCode.OK
    expired = mint(KEY, namespace="default", role="producer", ttl_seconds=1, now=time.time() - 60)
    other_key = mint(b"o" * 40, namespace="default", role="producer")
    cases = {
        "expired": (expired, "expired"),
        "malformed": ("not-a-token", "not valid"),
        "signed with another key": (other_key, "not valid"),
    }
    for what, (token, reason) in cases.items():
        code, details = _submit_code(address, token)
        assert code == grpc.StatusCode.UNAUTHENTICATED, what
        assert reason in details, (what, details)
    revoked = mint(KEY, namespace="default", role="producer")
    import jwt

    revoked_file.write_text(jwt.decode(revoked, options={"verify_signature": False})["jti"] + "\n")
    deadline = time.monotonic() + 10
    code, details = _submit_code(address, revoked)
    while code == grpc.StatusCode.OK and time.monotonic() < deadline:  # the list is read again within 1 s
        time.sleep(0.2)
        code, details = _submit_code(address, revoked)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in details
