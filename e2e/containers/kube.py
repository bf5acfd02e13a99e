"""The dev overlay's Deployments under `podman kube play` (Podman 4.3), for `make
test-containers`: rendered by `kubectl kustomize`, played on a compose project's network (its
PostgreSQL, Redis and services answer the names `config.env` gives), each probe run as the
kubelet would run it.

The manifests are changed only where Podman 4.3 cannot follow them (docs/deploying.md): each
workload's certificate, which cert-manager would put in a Secret volume, is a folder of the
compose project's certificates (4.3 crashes on a Secret volume without `optional`, and writes
its files base64-encoded); the images are the ones just built (`:local`, and the Envoy
stand-in); `meshplate-secrets` gets a name of this run's, so a developer's own is never touched."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from meshplate_testing.podman import Project

ROOT = Path(__file__).resolve().parents[2]
SECRET = "meshplate-secrets"


@dataclass(frozen=True)
class KubePod:
    """One Deployment's pod (kube play makes `<name>-pod-0`) and its container's probes."""

    name: str
    container: str
    probes: dict[str, dict[str, Any]]
    ports: dict[str, int]

    @property
    def pod(self) -> str:
        return f"{self.name}-pod-0"


@dataclass(frozen=True)
class Played:
    """The dev overlay's Deployments, written for `podman kube play` on `stack`'s network."""

    stack: Project
    workloads: Path
    secret: str
    pods: list[KubePod]

    @classmethod
    def prepare(cls, stack: Project, folder: Path, *, envoy_image: str) -> Played:
        rendered = subprocess.run(
            [
                str(Path(sys.executable).with_name("kubectl")),
                "kustomize",
                str(ROOT / "deploy" / "k8s" / "overlays" / "dev"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        secret = f"{SECRET}-{stack.name}"
        certificates = _certificates(stack, folder / "tls")
        documents = []
        for document in yaml.safe_load_all(rendered):
            if document["kind"] == "Deployment":
                _adapt(document["spec"]["template"]["spec"], certificates, secret, envoy_image)
                documents.append(document)
            elif document["kind"] == "ConfigMap":
                documents.append(document)
        workloads = folder / "dev.yaml"
        workloads.write_text(yaml.safe_dump_all(documents))
        pods = [_pod(document) for document in documents if document["kind"] == "Deployment"]
        return cls(stack, workloads, secret, pods)

    def start(self) -> None:
        """The secret the Deployments read, then the pods."""
        self.stack.run("secret", "create", self.secret, "-", input_text=self._secret_payload())
        self.stack.run(
            "kube", "play", "--network", f"{self.stack.name}_default", str(self.workloads)
        )

    def stop(self) -> None:
        """The pods, the secret, and the volumes kube play made of the ConfigMaps (4.3's
        `kube down` leaves them)."""
        self.stack.run("kube", "down", str(self.workloads), check=False)
        self.stack.run("secret", "rm", self.secret, check=False)
        if made := [name for name in self._config_volumes() if self._exists("volume", name)]:
            self.stack.run("volume", "rm", "--force", *made)

    def leftovers(self) -> list[str]:
        """Whatever of this play is still there."""
        return [
            *(pod.pod for pod in self.pods if self._exists("pod", pod.pod)),
            *([self.secret] if self._exists("secret", self.secret) else []),
            *(name for name in self._config_volumes() if self._exists("volume", name)),
        ]

    def probe(self, pod: KubePod, *, curl_image: str, within_s: float = 90) -> list[str]:
        """Each probe of the pod's container, as the kubelet would run it, until it passes (or
        `within_s` has passed): exec in the container, httpGet and tcpSocket from a container
        on the network to the pod's address."""
        address = self._address(pod)
        results = []
        for kind, probe in pod.probes.items():
            deadline = time.monotonic() + within_s
            while True:
                command = self._probe_command(pod, probe, address, curl_image)
                done = self.stack.attempt(*command, timeout_s=30)
                if done.returncode == 0 or time.monotonic() > deadline:
                    outcome = "ok" if done.returncode == 0 else (done.stdout + done.stderr)[-300:]
                    results.append(f"{pod.name} {kind}: {outcome}")
                    break
                time.sleep(2)
        return results

    def _probe_command(
        self, pod: KubePod, probe: dict[str, Any], address: str, curl_image: str
    ) -> list[str]:
        if "exec" in probe:
            return ["exec", pod.container, *probe["exec"]["command"]]
        check = probe.get("httpGet") or probe["tcpSocket"]
        port = str(pod.ports.get(check["port"], check["port"]))
        prober = ["run", "--rm", "--network", f"{self.stack.name}_default", "--entrypoint"]
        if "httpGet" in probe:
            url = f"http://{address}:{port}{check['path']}"
            return [*prober, "curl", curl_image, "-fsS", "--max-time", "3", url]
        connect = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
        return [*prober, "python3", curl_image, "-c", connect, address, port]

    def _address(self, pod: KubePod) -> str:
        """The pod's address on the network (its infra container's)."""
        networks = self.stack.inspect(pod.container)["NetworkSettings"]["Networks"]
        if not networks:
            mode = self.stack.inspect(pod.container)["HostConfig"]["NetworkMode"]
            networks = self.stack.inspect(mode.removeprefix("container:"))["NetworkSettings"][
                "Networks"
            ]
        return str(next(iter(networks.values()))["IPAddress"])

    def _secret_payload(self) -> str:
        """meshplate-secrets as 4.3's kube play reads one for `secretKeyRef`: a JSON object of
        base64 values, with every key secret.example.yaml lists."""
        key = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        password = self.stack.env["POSTGRES_PASSWORD"]
        values = {
            **{
                f"{name.upper()}_DATABASE_URL": f"postgresql://postgres:{password}@postgres:5432/{name}"
                for name in ("auth", "users", "ratelimit")
            },
            "AUTH_SIGNING_KEYS": key.decode(),
            "ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "ADMIN_SECRET_KEY": secrets.token_urlsafe(32),
        }
        example = yaml.safe_load((ROOT / "deploy" / "k8s" / "secret.example.yaml").read_text())
        assert values.keys() == example["stringData"].keys()
        return json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()})

    def _config_volumes(self) -> set[str]:
        return {
            volume["configMap"]["name"]
            for document in yaml.safe_load_all(self.workloads.read_text())
            if document["kind"] == "Deployment"
            for volume in document["spec"]["template"]["spec"].get("volumes", [])
            if "configMap" in volume
        }

    def _exists(self, kind: str, name: str) -> bool:
        return self.stack.attempt(kind, "exists", name).returncode == 0


def _certificates(stack: Project, folder: Path) -> Path:
    """A copy of the compose project's certificates, a folder per workload, readable by any user
    (Envoy's is 101, where the volume's files are 10001's)."""
    volume = stack.run("volume", "mount", f"{stack.name}_certs").strip()
    try:
        shutil.copytree(volume, folder, ignore=shutil.ignore_patterns("ca"))
    finally:
        stack.run("volume", "unmount", f"{stack.name}_certs", check=False)
    for item in folder.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o444)
    return folder


def _adapt(spec: dict[str, Any], certificates: Path, secret: str, envoy_image: str) -> None:
    """What Podman 4.3 cannot follow, changed in one pod spec (see the module's docstring)."""
    for volume in spec.get("volumes", []):
        if found := volume.pop("secret", None):
            workload = found["secretName"].removesuffix("-tls")
            volume["hostPath"] = {"path": str(certificates / workload), "type": "Directory"}
    for container in spec["containers"]:
        name = container["image"].partition(":")[0]
        if name.startswith("meshplate/"):
            container["image"] = f"{name}:local"
        elif name == "envoyproxy/envoy":
            container["image"] = envoy_image
        for variable in container.get("env", []):
            if (ref := variable.get("valueFrom", {}).get("secretKeyRef")) and ref["name"] == SECRET:
                ref["name"] = secret


def _pod(document: dict[str, Any]) -> KubePod:
    name = document["metadata"]["name"]
    container = document["spec"]["template"]["spec"]["containers"][0]
    return KubePod(
        name=name,
        container=f"{name}-pod-0-{container['name']}",
        probes={key: value for key, value in container.items() if key.endswith("Probe")},
        ports={port["name"]: port["containerPort"] for port in container.get("ports", [])},
    )
