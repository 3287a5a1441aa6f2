"""TLS contexts for the API: a replica's server context and the client side (CLI, workers,
replica-to-replica calls). Standard library `ssl` only.

mTLS modes (`--require-client-cert`): `none` (default; a client CA, if given, still verifies
certificates clients offer), `workers` (the worker websocket refuses a connection without a
verified client certificate: 403 CLIENT_CERT_REQUIRED; the CLI and dashboard need none), and
`all` (the TLS handshake itself requires one, for every route).
"""

from __future__ import annotations

import ssl
from typing import Final

MTLS_MODES: Final = ("none", "workers", "all")


def server_context(cert_file: str, key_file: str, *, client_ca: str | None = None, require: str = "none"
                   ) -> ssl.SSLContext:
    """Raises ValueError for a bad mode, OSError/ssl.SSLError for unreadable files."""
    if require not in MTLS_MODES:
        raise ValueError(f"require_client_cert must be one of {', '.join(MTLS_MODES)}")
    if require != "none" and not client_ca:
        raise ValueError("requiring client certificates needs a client CA (--tls-client-ca)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if require == "all" else ssl.CERT_OPTIONAL
    return ctx


def client_context(ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
                   ) -> ssl.SSLContext | None:
    """None when nothing is configured (aiohttp's default verification applies)."""
    if not (ca_file or cert_file):
        return None
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx


__all__ = ["MTLS_MODES", "client_context", "server_context"]
