"""TLS and tokens for the benchmark's tasktide platform when it runs secured: a private CA and
the server's certificate (scripts/dev_certs.py), a signing key, and the tokens of the client, the
workers and the benchmark's own admin calls. Everything lives in one folder of the run."""

from __future__ import annotations

import dataclasses
import importlib.util
import secrets
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.procs import ROOT
from tasktide import ClientSettings
from tasktide_services.common.auth import mint

NAMESPACE = "default"


@dataclass(frozen=True)
class Credentials:
    folder: Path
    key: str

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def token(self, role: str) -> str:
        return mint(self.key.encode(), namespace=NAMESPACE, role=role, subject=f"bench-{role}")

    def server_env(self) -> dict[str, str]:
        """The variables of a server that listens with TLS and checks tokens."""
        return {
            "TASKTIDE_TLS_CERT": str(self.folder / "server.pem"),
            "TASKTIDE_TLS_KEY": str(self.folder / "server-key.pem"),
            "TASKTIDE_TLS_CA": str(self.ca),
            "TASKTIDE_AUTH_KEY": self.key,
        }

    def worker_env(self) -> dict[str, str]:
        return {"TASKTIDE_TLS_CA": str(self.ca), "TASKTIDE_TOKEN": self.token("worker")}

    def client_settings(self, base: ClientSettings) -> ClientSettings:
        """`base` with the CA and a producer token."""
        return dataclasses.replace(base, tls_ca=str(self.ca), token=self.token("producer"))

    def admin_channel(self, address: str) -> tuple[grpc.Channel, list[tuple[str, str]]]:
        """A TLS channel to `address` and the metadata of an admin token (for ListWorkers)."""
        creds = grpc.ssl_channel_credentials(self.ca.read_bytes())
        return grpc.secure_channel(address, creds), [("authorization", f"Bearer {self.token('admin')}")]


def make_credentials(folder: Path) -> Credentials:
    spec = importlib.util.spec_from_file_location("dev_certs", ROOT / "scripts" / "dev_certs.py")
    assert spec is not None and spec.loader is not None
    dev_certs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev_certs)
    dev_certs.make(folder, ["localhost", "127.0.0.1"])
    return Credentials(folder, secrets.token_urlsafe(48))
