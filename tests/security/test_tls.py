"""HTTPS and mTLS end to end: the CLI submits over HTTPS, a worker with a client certificate runs
the job; a worker without one is refused (mode `workers`); mode `all` refuses any client
without a certificate at the handshake, and replica-to-replica calls still work."""

from __future__ import annotations

import ssl
import urllib.error
from pathlib import Path

import pytest

from haco.cli import main
from tests.integration.cluster import Cluster, eventually, http

from .conftest import ClusterMaker


@pytest.fixture(scope="module")
def cluster(make_cluster: ClusterMaker, certs_dir: Path) -> Cluster:
    c = make_cluster(auth=True, tls_dir=certs_dir, mtls="workers")
    c.leader()
    return c


def cli(c: Cluster, certs: Path, *args: str, token: str | None = None) -> list[str]:
    return ["--coordinators", ",".join(c.urls), "--ca-file", str(certs / "ca.crt"),
            "--token", token or c.token("submitter"), *args]


def test_cli_over_https_and_a_worker_with_a_client_certificate_runs_the_job(
        cluster: Cluster, certs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert all(u.startswith("https://") for u in cluster.urls)
    cluster.start_worker("w-tls", capacity=1)
    code = main(cli(cluster, certs_dir, "--json", "submit", "--wait", "--", "echo", "over-tls"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "over-tls" in out
    worker = cluster.api(cluster.leader(), "GET", "/api/workers/w-tls")[1]["worker"]
    assert worker["connected"] is True


def test_a_worker_without_a_client_certificate_is_refused(cluster: Cluster, certs_dir: Path) -> None:
    no_cert = cluster.client_ctx(client_cert=False)
    status, body = http("GET", cluster.nodes[0].url + "/api/workers/connect", token=cluster.token("worker", "w-x"),
                        ctx=no_cert)
    assert status == 403 and body["error"]["detail"]["code"] == "CLIENT_CERT_REQUIRED", body
    status, _ = http("GET", cluster.nodes[0].url + "/api/jobs", token=cluster.token("reader"), ctx=no_cert)
    assert status == 200  # mode `workers`: the rest of the API needs no client certificate
    cluster.start_worker("w-nocert", client_cert=False)
    log = cluster.root / "worker-w-nocert.log"
    eventually(lambda: "403" in log.read_text(), 20, "the agent was refused with 403")
    assert cluster.api(0, "GET", "/api/workers/w-nocert")[0] == 404


def test_plain_http_and_an_untrusted_ca_fail(cluster: Cluster) -> None:
    url = cluster.nodes[0].url
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        http("GET", url.replace("https://", "http://") + "/api/health", timeout=3)
    with pytest.raises(urllib.error.URLError) as exc:
        http("GET", url + "/api/health", ctx=ssl.create_default_context(), timeout=3)
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)


def test_mtls_all_refuses_clients_without_a_certificate_and_peers_still_talk(
        make_cluster: ClusterMaker, certs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = make_cluster(auth=True, tls_dir=certs_dir, mtls="all")
    c.leader()
    with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
        http("GET", c.nodes[0].url + "/api/health", ctx=c.client_ctx(client_cert=False), timeout=3)
    assert c.api(0, "GET", "/api/health")[0] == 200  # the harness presents client.crt
    token = c.token("reader")
    follower = next(i for i in range(3) if i != c.leader())
    # the first revocation asks every peer's /api/cluster (replica to replica, with this replica's cert)
    assert main(["--coordinators", c.urls[follower], "--ca-file", str(certs_dir / "ca.crt"),
                 "--client-cert", str(certs_dir / "client.crt"), "--client-key", str(certs_dir / "client.key"),
                 "--token", c.admin or "", "token", "revoke", token]) == 0, capsys.readouterr()
    eventually(lambda: all(c.api(i, "GET", "/api/jobs", token=token)[0] == 401 for i in range(3)), 10,
               "the token refused on every replica")
