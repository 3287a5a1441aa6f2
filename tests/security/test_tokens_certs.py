"""Tokens (sign, verify, tamper, expiry, worker binding, TTL parsing) and `haco certs init`."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haco.cli import main
from haco.security.tokens import TokenError, issue, parse_ttl, unverified_claims, verify

SECRET = b"a-cluster-secret-of-some-length"


def test_a_token_verifies_until_it_expires() -> None:
    token, claims = issue(SECRET, "submitter", 60, now_s=1000.0)
    assert verify(SECRET, token, now_s=1059.0) == claims
    assert unverified_claims(token) == claims and claims.exp == 1060
    with pytest.raises(TokenError) as exc:
        verify(SECRET, token, now_s=1060.0)
    assert exc.value.code == "EXPIRED"


def test_wrong_secret_and_tampered_claims_are_refused() -> None:
    token, _ = issue(SECRET, "reader", 60, now_s=0.0)
    with pytest.raises(TokenError, match="does not verify"):
        verify(b"another-secret-entirely", token, now_s=1.0)
    admin_body = issue(SECRET, "admin", 60, now_s=0.0)[0].split(".")[1]
    prefix, _, mac = token.split(".")
    with pytest.raises(TokenError, match="does not verify"):  # a reader's MAC on admin claims
        verify(SECRET, f"{prefix}.{admin_body}.{mac}", now_s=1.0)


def test_worker_tokens_carry_their_worker_id_and_others_none() -> None:
    token, claims = issue(SECRET, "worker", 60, worker_id="w7", now_s=0.0)
    assert verify(SECRET, token, now_s=1.0).worker_id == "w7" == claims.worker_id
    with pytest.raises(ValueError):
        issue(SECRET, "worker", 60, now_s=0.0)
    with pytest.raises(ValueError):
        issue(SECRET, "admin", 60, worker_id="w7", now_s=0.0)
    with pytest.raises(ValueError):
        issue(SECRET, "root", 60, now_s=0.0)


def test_ttl_parsing() -> None:
    assert [parse_ttl(t) for t in ("30d", "12h", "90m", "45s", "3600", "1.5h")] == [
        2_592_000, 43_200, 5400, 45, 3600, 5400]
    for bad in ("", "0", "-1d", "10y", "401d", "d"):
        with pytest.raises(ValueError):
            parse_ttl(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=200).map(lambda b: "haco1." + b.hex() + ".x"))
def test_any_string_is_refused_with_token_error_only(text: str) -> None:
    with pytest.raises(TokenError):
        verify(SECRET, text, now_s=0.0)


def test_token_create_cli_prints_a_token_that_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_text("cli-secret-0123456789abcdef\n")
    assert main(["token", "create", "--role", "worker", "--worker-id", "w1", "--ttl", "1h",
                 "--secret-file", str(secret)]) == 0
    token = capsys.readouterr().out.strip()
    claims = verify(b"cli-secret-0123456789abcdef", token, now_s=unverified_claims(token).exp - 10)
    assert (claims.role, claims.worker_id) == ("worker", "w1")
    assert main(["token", "create", "--role", "admin", "--secret-file", str(tmp_path / "missing")]) == 64


def test_certs_init_makes_a_working_ca_server_and_client(tmp_path: Path) -> None:
    assert main(["certs", "init", "--dir", str(tmp_path), "--hosts", "haco-0.haco-peers,10.1.2.3"]) == 0
    for key in ("ca.key", "server.key", "client.key"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600
    assert main(["certs", "init", "--dir", str(tmp_path)]) == 1  # never overwrites without --force
    from cryptography import x509
    server = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"haco-0.haco-peers", "localhost"} <= set(san.get_values_for_type(x509.DNSName))
    assert {"10.1.2.3", "127.0.0.1"} <= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client_ctx.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")


def test_every_route_of_the_app_has_a_rule() -> None:
    import importlib
    import pkgutil

    from aiohttp import web

    import haco.server.routes
    from haco.server.auth import ROUTE_RULES
    modules = [importlib.import_module(f"haco.server.routes.{m.name}")
               for m in pkgutil.iter_modules(haco.server.routes.__path__)]
    declared = {(r.method, r.path) for m in modules for r in getattr(m, "routes", ()) if isinstance(r, web.RouteDef)}
    assert declared == set(ROUTE_RULES), declared ^ set(ROUTE_RULES)
