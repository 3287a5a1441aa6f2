"""deploy/k8s: every manifest validates offline with `kubernetes-validate --strict`, and the pieces agree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="pip install -e '.[test]' (pyyaml, kubernetes-validate)")

from haco.k8s_env import derive

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
if not VALIDATE.exists():
    pytest.skip("kubernetes-validate is not installed: pip install -e '.[test]'", allow_module_level=True)


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def kinds() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for name in docs("kustomization.yaml")[0]["resources"]:
        for d in docs(name):
            out[(d["kind"], d["metadata"]["name"])] = d
    return out


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    listed = set(docs("kustomization.yaml")[0]["resources"])
    present = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == present


@pytest.mark.parametrize("name", sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_manifest_validates_strictly_offline(name: str) -> None:
    out = subprocess.run([str(VALIDATE), "--strict", "--no-warn", str(DEPLOY / name)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "passed" in out.stdout and "ERROR" not in out.stdout


def test_validator_refuses_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((DEPLOY / "pdb.yaml").read_text().replace("minAvailable: 2", "minAvailable: 2\n  quorum: 2"))
    out = subprocess.run([str(VALIDATE), "--strict", "--no-warn", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "quorum" in out.stdout


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (its built-in kustomize renders offline)")
def test_the_rendered_kustomization_validates_strictly(tmp_path: Path) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    bundle = tmp_path / "bundle.yaml"
    bundle.write_text(out.stdout)
    checked = subprocess.run([str(VALIDATE), "--strict", "--no-warn", str(bundle)], capture_output=True, text=True,
                             timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(rendered) == len(kinds()) and checked.stdout.count("passed") == len(rendered)
    for d in rendered:
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "haco"
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "haco"
        if d["kind"] == "StatefulSet":
            assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "haco:0.1.0"
            assert "app.kubernetes.io/part-of" not in d["spec"]["selector"]["matchLabels"]  # selectors stay stable


def test_statefulset_peers_probes_and_quorum_agree() -> None:
    k = kinds()
    sts, cfg = k[("StatefulSet", "haco")], k[("ConfigMap", "haco-config")]["data"]
    peers, client = k[("Service", "haco-peers")]["spec"], k[("Service", "haco")]["spec"]
    spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
    assert spec["podManagementPolicy"] == "Parallel" and spec["serviceName"] == cfg["HACO_K8S_SERVICE"] == "haco-peers"
    assert int(cfg["HACO_REPLICAS"]) == spec["replicas"] == 3
    assert peers["clusterIP"] == "None" and peers["publishNotReadyAddresses"] is True
    assert not client.get("publishNotReadyAddresses") and client.get("clusterIP") != "None"
    labels = spec["template"]["metadata"]["labels"]
    for selector in (peers["selector"], client["selector"], spec["selector"]["matchLabels"],
                     k[("PodDisruptionBudget", "haco")]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert k[("PodDisruptionBudget", "haco")]["spec"]["minAvailable"] == spec["replicas"] // 2 + 1
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/api/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/api/health"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"raft": int(cfg["HACO_RAFT_PORT"]), "http": int(cfg["HACO_HTTP_PORT"])}
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"]["requests"] and pod["affinity"]["podAntiAffinity"]
    assert "preStop" in c["lifecycle"] and pod["terminationGracePeriodSeconds"] >= 15
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] in {m["name"] for m in c["volumeMounts"]}
    env = {e["name"]: e for e in c["env"]}
    assert env["HACO_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["HACO_DATA_DIR"]["value"] == next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data")
    secret_keys = set(docs("secret.example.yaml")[0]["stringData"])
    for var in ("HACO_RAFT_PASSWORD_FILE", "HACO_TOKEN_SECRET_FILE"):
        assert Path(env[var]["value"]).name in secret_keys


def test_pods_of_this_statefulset_derive_addresses_the_headless_service_serves() -> None:
    cfg = kinds()[("ConfigMap", "haco-config")]["data"]
    ident = derive({**cfg, "HACO_POD_NAME": "haco-1", "POD_NAMESPACE": "haco"})
    assert ident.me.raft_addr == "haco-1.haco-peers.haco.svc.cluster.local:7100"
    assert [p.id for p in ident.peers] == ["haco-0", "haco-2"]


def test_workers_reach_the_client_service_with_their_own_token() -> None:
    k = kinds()
    sts = k[("StatefulSet", "haco-worker")]
    worker = sts["spec"]["template"]["spec"]
    c = worker["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["HACO_COORDINATORS"]["value"] == "http://haco:7001"
    assert env["HACO_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    args = c["args"]
    assert args[args.index("--id") + 1] == "$(HACO_POD_NAME)"  # the id its token names
    tokens = next(v for v in worker["volumes"] if v["name"] == "tokens")["secret"]["secretName"]
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "tokens")
    assert env["HACO_TOKEN_FILE"]["value"] == f"{mount}/$(HACO_POD_NAME)"
    template = {d["metadata"]["name"]: d for d in docs("secret.example.yaml")}[tokens]
    assert set(template["stringData"]) == {f"haco-worker-{i}" for i in range(sts["spec"]["replicas"])}
    assert worker["securityContext"]["runAsNonRoot"] is True and "volumeClaimTemplates" not in sts["spec"]
    assert worker["terminationGracePeriodSeconds"] > float(args[args.index("--drain-timeout") + 1])


def _container_env(container: dict[str, Any], pod: str, remap: dict[str, str]) -> dict[str, str]:
    """The environment Kubernetes would give `container` in pod `pod`: envFrom ConfigMaps, fieldRefs and
    `$(VAR)` references expanded; file paths under the Secret mounts remapped to `remap`'s directories."""
    env: dict[str, str] = {"HOSTNAME": pod}
    for source in container.get("envFrom", []):
        env.update(kinds()[("ConfigMap", source["configMapRef"]["name"])]["data"])
    fields = {"metadata.name": pod, "metadata.namespace": "haco"}
    for e in container["env"]:
        value = fields[e["valueFrom"]["fieldRef"]["fieldPath"]] if "valueFrom" in e else e["value"]
        for name, known in env.items():
            value = value.replace(f"$({name})", known)
        for mount, local in remap.items():
            value = value.replace(mount, local)
        env[e["name"]] = value
    return env


def test_the_coordinator_reads_its_manifest_environment(tmp_path: Path) -> None:
    from haco.config import NodeConfig
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for key in docs("secret.example.yaml")[0]["stringData"]:
        (secrets / key).write_text(f"{key}-value-of-32-characters-or-more\n")
    c = kinds()[("StatefulSet", "haco")]["spec"]["template"]["spec"]["containers"][0]
    env = _container_env(c, "haco-2", {"/etc/haco/secrets": str(secrets)})
    cfg = NodeConfig.from_env(env)
    assert cfg.id == "haco-2" and cfg.raft_addr == "haco-2.haco-peers.haco.svc.cluster.local:7100"
    assert cfg.raft_password == "raft-password-value-of-32-characters-or-more"
    assert cfg.token_secret == "token-secret-value-of-32-characters-or-more" and not cfg.insecure_open_api
    assert str(cfg.data_dir) == "/var/lib/haco" and cfg.raft.dns_cache_s == 2.0 and len(cfg.peers) == 2


def test_a_worker_reads_its_manifest_environment(tmp_path: Path) -> None:
    import argparse

    from haco.worker.agent import add_arguments, config_from_args
    (tmp_path / "haco-worker-1").write_text("haco1.token-for-worker-1\n")
    c = kinds()[("StatefulSet", "haco-worker")]["spec"]["template"]["spec"]["containers"][0]
    env = _container_env(c, "haco-worker-1", {"/etc/haco/worker-tokens": str(tmp_path)})
    args = [a.replace("$(HACO_POD_NAME)", "haco-worker-1") for a in c["args"]]
    assert args[0] == "worker"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg = config_from_args(parser.parse_args(args[1:]), env)
    assert cfg.worker_id == "haco-worker-1" and cfg.token == "haco1.token-for-worker-1"
    assert cfg.coordinators == ("http://haco:7001",)
