"""`haco certs init`: a private CA plus a server and a client certificate, made with `cryptography`.

Files written under `--dir` (keys mode 0600, never overwritten unless `--force`):
`ca.crt ca.key server.crt server.key client.crt client.key`. The server certificate names every
`--hosts` entry plus `localhost` and `127.0.0.1` (IP entries become IP SANs); the client
certificate is for workers when a replica asks for mTLS. The keys are ECDSA P-256. The same
files fit a Kubernetes TLS Secret (`kubectl create secret generic haco-tls --from-file=DIR`).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FILES = ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")
DEFAULT_DAYS = 825


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "haco"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey,
          days: int, *, ca: bool, usage: list[x509.ObjectIdentifier] | None = None,
          san: x509.SubjectAlternativeName | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                          crl_sign=False, content_commitment=False, data_encipherment=False,
                                          key_agreement=True, encipher_only=False, decipher_only=False), critical=True)
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
    if usage:
        b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    if san is not None:
        b = b.add_extension(san, critical=False)
    return b.sign(signer, hashes.SHA256())


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def init(out: Path, hosts: Iterable[str], *, days: int = DEFAULT_DAYS, client_cn: str = "haco-worker",
         force: bool = False) -> dict[str, Path]:
    """Write the CA, server and client files under `out`; returns their paths by name. Raises
    FileExistsError if any exists (unless `force`)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in FILES}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    hosts = [h.strip() for h in hosts if h.strip()]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("haco CA")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, days, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert(_name(hosts[0] if hosts else "localhost"), server_key, ca_name, ca_key, days, ca=False,
                   usage=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], san=_san(hosts))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert(_name(client_cn), client_key, ca_name, ca_key, days, ca=False,
                   usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    for name, cert, key in (("ca", ca, ca_key), ("server", server, server_key), ("client", client, client_key)):
        _write(paths[f"{name}.crt"], cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(paths[f"{name}.key"], _pem_key(key), 0o600)
    return paths


def run_certs(args: argparse.Namespace) -> int:
    if not 1 <= args.days <= 3650:
        print("haco: error: --days must be 1 to 3650", file=sys.stderr)
        return 64
    try:
        paths = init(args.dir, args.hosts.split(","), days=args.days, client_cn=args.client_cn, force=args.force)
    except (FileExistsError, OSError) as exc:
        print(f"haco: error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name:11} {path}")
    return 0


__all__ = ["FILES", "init", "run_certs"]
