"""TLS for the services' listeners and for the channels between services.

A server with a certificate and key serves TLS; with a client CA too it requires client
certificates signed by it (mutual TLS). The channels a service opens to its peers trust the CA of
`TASKTIDE_TLS_CA` and, where the peers require client certificates, present the service's own
certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


class TlsError(Exception):
    """A TLS setting that cannot be used (a file missing or unreadable, a key without a certificate)."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class TlsSettings:
    cert: str = ""  # PEM certificate chain of this server (and its client certificate for peers)
    key: str = ""  # its private key
    ca: str = ""  # the CA that signs the servers this process connects to
    client_ca: str = ""  # a server with this requires client certificates signed by it

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.key)

    def server_credentials(self) -> grpc.ServerCredentials:
        if not (self.cert and self.key):
            raise TlsError("TLS needs both a certificate (TASKTIDE_TLS_CERT) and its key (TASKTIDE_TLS_KEY)")
        pair = (_read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))
        if self.client_ca:
            return grpc.ssl_server_credentials(
                [pair], root_certificates=_read(self.client_ca, "client CA"), require_client_auth=True
            )
        return grpc.ssl_server_credentials([pair])

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """For calls to peers: the CA that signs them, and this service's certificate as the client's."""
        root = _read(self.ca, "TLS CA") if self.ca else None
        if self.cert and self.key:
            return grpc.ssl_channel_credentials(root, _read(self.key, "TLS key"), _read(self.cert, "TLS certificate"))
        return grpc.ssl_channel_credentials(root)
