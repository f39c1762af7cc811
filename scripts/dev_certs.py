"""Make a private CA and certificates for a tasktide set-up (development, tests, docker compose).

    python scripts/dev_certs.py DIR [--hosts localhost,127.0.0.1,scheduler,registry,results]

writes into DIR: ca.pem / ca-key.pem (the CA), server.pem / server-key.pem (for every service,
valid for each of --hosts), client.pem / client-key.pem (a client certificate for mutual TLS).
Production set-ups use certificates from their own CA; nothing here is needed at run time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "scheduler", "registry", "results", "dashboard")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _builder(subject: str, issuer: x509.Name, public: ec.EllipticCurvePublicKey, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def make(folder: Path, hosts: list[str], ca_name: str = "tasktide dev CA", days: int = 365) -> Path:
    """Write the CA, a server certificate for `hosts` and a client certificate into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = (
        _builder(ca_name, _name(ca_name), ca_key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "ca-key.pem").write_bytes(_pem_key(ca_key))
    for role, usage, extra in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH, [_san(hosts)]),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, []),
    ):
        key = _key()
        builder = _builder(f"tasktide {role}", ca.subject, key.public_key(), days).add_extension(
            x509.ExtendedKeyUsage([usage, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        for ext in extra:
            builder = builder.add_extension(ext, critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        (folder / f"{role}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{role}-key.pem").write_bytes(_pem_key(key))
    return folder


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="dev_certs.py", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--hosts", default=",".join(DEFAULT_HOSTS), help="names and addresses the servers answer on")
    args = p.parse_args(argv)
    make(args.folder, [h.strip() for h in args.hosts.split(",") if h.strip()])
    print(f"certificates in {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
