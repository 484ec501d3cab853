"""Run the Helm chart's own Deployment, Secret and ConfigMap with `podman kube play`, on the
host network and loopback only: the chart's pod spec, really running, without a cluster.

    .venv/bin/python k8s/image/kubeplay.py up      # render, adapt, play, wait for /readyz
    .venv/bin/python k8s/image/kubeplay.py down    # remove the pod, its secret and volumes
    .venv/bin/python k8s/image/kubeplay.py render  # print the adapted YAML (no key in it)

The chart is rendered by the pinned helm (riskserve/devtools/helm.py) with ordinary values: the
local image, one replica, an API key, the ports, and `args: [--host=127.0.0.1]`. Then only what
`podman kube play` (Debian's podman 4.3) cannot do the Kubernetes way is changed; `adapt()`
returns one note per change, saying what and why.
"""

from __future__ import annotations

import argparse
import base64
import copy
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from riskserve.devtools import helm as ht  # the pinned helm and the chart's paths

REPO_ROOT = Path(__file__).resolve().parents[2]

PODMAN = REPO_ROOT / "k8s" / "image" / "podman.sh"
PLAY_DIR = REPO_ROOT / ".cache" / "image" / "kube-play"
IMAGE_REF_FILE = REPO_ROOT / ".cache" / "image" / "image-ref"
RELEASE = "riskserve-play"
NAMESPACE = "riskserve"
KEPT_KINDS = frozenset({"Deployment", "Secret", "ConfigMap"})
# podman 4.4 started base64-decoding Secret `data` into mounted files (containers/podman#16625).
DECODES_SECRET_DATA = (4, 4)

Manifest = dict[str, Any]


@dataclass
class Play:
    """A rendered and adapted release: its manifests, names and the changes made for podman."""

    release: str
    objects: list[Manifest]
    notes: list[str] = field(default_factory=list)

    def _one(self, kind: str) -> Manifest:
        return ht.one(self.objects, kind)

    @property
    def pod(self) -> str:
        """Pod name podman gives the Deployment's (single) replica."""
        return f"{self._one('Deployment')['metadata']['name']}-pod-0"

    @property
    def container(self) -> str:
        """Name of the riskserve container inside that pod."""
        spec = self._one("Deployment")["spec"]["template"]["spec"]
        return f"{self.pod}-{spec['containers'][0]['name']}"

    @property
    def secret(self) -> str:
        """Name of the API-key Secret (podman stores it as a podman secret of that name)."""
        return str(self._one("Secret")["metadata"]["name"])

    @property
    def volumes(self) -> list[str]:
        """Named volumes podman makes for the pod's volumes (emptyDirs, the Secret)."""
        spec = self._one("Deployment")["spec"]["template"]["spec"]
        names = [v["name"] for v in spec.get("volumes", []) if "emptyDir" in v]
        return [*names, self.secret]

    def yaml(self, redact: bool = False) -> str:
        """The manifests for `podman kube play`; `redact` blanks the Secret's values."""
        objects = copy.deepcopy(self.objects)
        if redact:
            for obj in objects:
                if obj["kind"] == "Secret":
                    obj["data"] = dict.fromkeys(obj.get("data", {}), "<redacted>")
        return yaml.safe_dump_all(objects, sort_keys=False)


def podman(*args: str, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """podman through k8s/image/podman.sh (this machine's runtime, cgroup and ulimit settings)."""
    proc = subprocess.run([str(PODMAN), *args], capture_output=True, text=True, check=False,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    return proc


def podman_version() -> tuple[int, int]:
    """(major, minor) of the podman client."""
    out = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    major, minor = out.split(".")[:2]
    return int(major), int(minor)


def split_image(ref: str) -> tuple[str, str]:
    """`repo:tag` -> (repo, tag); a reference without a tag means `latest`."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


def render(image: str, keys: Sequence[str], http_port: int, grpc_port: int,
           release: str = RELEASE) -> list[Manifest]:
    """`helm template` of the chart with the values a single local pod needs."""
    repository, tag = split_image(image)
    values = {
        "replicaCount": 1,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "auth": {"apiKeys": list(keys)},
        "containerPorts": {"http": http_port, "grpc": grpc_port},
        # Host networking shares the host's interfaces: listen on loopback only.
        "args": ["--host=127.0.0.1"],
        "serviceAccount": {"create": False},
        "podDisruptionBudget": {"enabled": False},
        "tests": {"enabled": False},
    }
    with tempfile.TemporaryDirectory(prefix="riskserve-kubeplay-") as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.touch(mode=0o600)
        values_file.write_text(yaml.safe_dump(values))
        proc = ht.run_helm("template", release, str(ht.CHART_DIR), "--namespace", NAMESPACE,
                           "-f", str(values_file))
    if proc.returncode != 0:
        raise ht.HelmError(proc.stderr.strip())
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def adapt(objects: Sequence[Manifest], version: tuple[int, int],
          release: str = RELEASE) -> Play:
    """Keep the Deployment, Secret and ConfigMap and change only what podman kube play cannot
    run the Kubernetes way; each change is recorded as a note."""
    kept = [copy.deepcopy(o) for o in objects
            if o.get("kind") in KEPT_KINDS and not ht.is_test_hook(o)]
    play = Play(release, kept)
    dropped = sorted({o["kind"] for o in objects} - KEPT_KINDS)
    play.notes.append(f"dropped {', '.join(dropped)}: cluster objects with no podman equivalent "
                      "(no Service, scheduler or disruption budget on one host)")
    deployment = ht.one(kept, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]

    if container.pop("ports", None) is not None:
        play.notes.append("removed containerPort entries: podman 4.3 turns them into port "
                          "mappings, which host networking rejects (the ports are the chart's "
                          "containerPorts values, set through BENTOML_PORT/RISKSERVE_GRPC_PORT)")
    probes = [p for p in ("startupProbe", "livenessProbe", "readinessProbe")
              if container.pop(p, None) is not None]
    if probes:
        play.notes.append(f"removed {', '.join(probes)}: podman 4.3 ignores startup and readiness "
                          "probes and turns the liveness probe into a `curl` healthcheck (no curl "
                          "in the image; the named port resolves to 0) run by systemd timers "
                          "(no systemd here); callers poll /readyz and /livez instead")

    if container.pop("lifecycle", None) is not None:
        play.notes.append("removed lifecycle.preStop: podman kube play runs no lifecycle hooks "
                          "(podman's docs/kubernetes_support.md); `podman kube down` sends SIGTERM "
                          "at once, and the server still drains the requests in flight")

    renamed: dict[str, str] = {}
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            new = f"{release}-{volume['name']}"
            renamed[volume["name"]] = new
            volume["name"] = new
        if "secret" in volume and "optional" not in volume["secret"]:
            volume["secret"]["optional"] = False
            play.notes.append("set the secret volume's `optional: false` (the Kubernetes default) "
                              "explicitly: podman 4.3 dereferences the unset field and panics "
                              "(containers/podman#16636)")
    for mount in container.get("volumeMounts", []):
        mount["name"] = renamed.get(mount["name"], mount["name"])
    if renamed:
        play.notes.append(f"renamed emptyDir volumes {sorted(renamed)} to "
                          f"{sorted(renamed.values())}: podman makes each a host-wide named "
                          "volume called after the pod volume, so a bare `tmp` could meet "
                          "someone else's volume")

    secret = ht.one(kept, "Secret")
    if version < DECODES_SECRET_DATA and secret.get("data"):
        secret["data"] = {k: podman43_secret_value(v) for k, v in secret["data"].items()}
        play.notes.append("Secret data given as the key text itself: podman < 4.4 base64-decodes "
                          "`data` when it reads the YAML but writes the mounted file encoded "
                          "again (containers/podman#16625), so the file holds the `data` string; "
                          "that works for one key that is itself canonical base64 (hex keys are)")

    configmap_name = container["envFrom"][0]["configMapRef"]["name"]
    for configmap in ht.by_kind(kept, "ConfigMap"):
        data = configmap.get("data", {})
        if configmap["metadata"]["name"] == configmap_name and "RISKSERVE_GRPC_HOST" in data:
            data["RISKSERVE_GRPC_HOST"] = "127.0.0.1"
            play.notes.append("ConfigMap RISKSERVE_GRPC_HOST=127.0.0.1 (the chart binds 0.0.0.0 "
                              "inside a pod's own network namespace; here the namespace is the "
                              "host's). Set in the ConfigMap because podman 4.3 lets envFrom "
                              "override env, the reverse of Kubernetes")
    return play


def podman43_secret_value(encoded: str) -> str:
    """The Secret `data` value that podman 4.3 mounts as the intended file content.

    podman 4.3 decodes the value and mounts it re-encoded, so the file holds the value string
    unchanged; it must therefore be the key file's text and itself valid, canonical base64.
    """
    text = base64.b64decode(encoded).decode().strip()
    try:
        canonical = base64.b64encode(base64.b64decode(text, validate=True)).decode() == text
    except ValueError:
        canonical = False
    if "\n" in text or not canonical:
        raise ValueError("podman < 4.4 can mount only one API key that is itself canonical "
                         "base64 (e.g. 48 hex characters: python3 -c 'import secrets; "
                         "print(secrets.token_hex(24))'); containers/podman#16625")
    return text


def play_paths(release: str) -> tuple[Path, Path]:
    """The adapted manifests (mode 0600: they hold the key) and the redacted copy for reading."""
    return PLAY_DIR / f"{release}.yaml", PLAY_DIR / f"{release}.redacted.yaml"


def down(release: str = RELEASE) -> list[str]:
    """Remove the pod, the podman secret and the named volumes of a release; returns what was
    removed. Safe to run again and when nothing is there."""
    manifest, redacted = play_paths(release)
    removed: list[str] = []
    if manifest.exists():
        play = Play(release, [d for d in yaml.safe_load_all(manifest.read_text()) if d])
        proc = podman("kube", "down", str(manifest), check=False, timeout=120)
        if proc.returncode == 0:
            removed.append(f"pod {play.pod}")
        names_secret, names_volumes = play.secret, play.volumes
    else:
        fullname = release if "riskserve" in release else f"{release}-riskserve"
        names_secret = f"{fullname}-api-keys"
        names_volumes = [f"{release}-tmp", f"{release}-bentoml-home", names_secret]
        if podman("pod", "exists", f"{fullname}-pod-0", check=False).returncode == 0:
            podman("pod", "rm", "-f", "-t", "20", f"{fullname}-pod-0", check=False, timeout=120)
            removed.append(f"pod {fullname}-pod-0")
    if podman("secret", "inspect", names_secret, check=False).returncode == 0:
        podman("secret", "rm", names_secret, check=False)
        removed.append(f"secret {names_secret}")
    for volume in names_volumes:
        if podman("volume", "exists", volume, check=False).returncode == 0:
            podman("volume", "rm", "-f", volume, check=False)
            removed.append(f"volume {volume}")
    manifest.unlink(missing_ok=True)
    redacted.unlink(missing_ok=True)
    return removed


def wait_ready(url: str, container: str, timeout_s: float) -> None:
    """Poll GET /readyz until 200; fail early (with the log tail) if the container stops."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False)
        if state.returncode != 0 or state.stdout.strip() in {"exited", "stopped", "dead"}:
            logs = podman("logs", "--tail", "40", container, check=False)
            raise RuntimeError(f"container {container} is not running "
                               f"({state.stdout.strip() or state.stderr.strip()}):\n"
                               f"{logs.stdout}{logs.stderr}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # polling interval, not synchronisation: the loop checks readiness
    logs = podman("logs", "--tail", "40", container, check=False)
    raise RuntimeError(f"{url}/readyz not ready after {timeout_s:.0f}s:\n"
                       f"{logs.stdout}{logs.stderr}")


def up(image: str, keys: Sequence[str], http_port: int, grpc_port: int,
       release: str = RELEASE, timeout_s: float = 180) -> Play:
    """Render, adapt and play the release with host networking, then wait for /readyz.
    Anything left from an earlier run of the same release is removed first."""
    if podman("image", "exists", image, check=False).returncode != 0:
        raise RuntimeError(f"image {image} not found in podman's storage: run 'make image'")
    down(release)
    play = adapt(render(image, keys, http_port, grpc_port, release), podman_version(), release)
    manifest, redacted = play_paths(release)
    PLAY_DIR.mkdir(parents=True, exist_ok=True)
    manifest.touch(mode=0o600)
    manifest.chmod(0o600)
    manifest.write_text(play.yaml())
    redacted.write_text(play.yaml(redact=True))
    podman("kube", "play", "--network", "host", str(manifest), timeout=300)
    wait_ready(f"http://127.0.0.1:{http_port}", play.container, timeout_s)
    return play


def _keys(key_file: Path | None) -> list[str]:
    if key_file is None:
        key_file = PLAY_DIR / "api-key"
        if not key_file.exists():
            PLAY_DIR.mkdir(parents=True, exist_ok=True)
            key_file.touch(mode=0o600)
            # Hex: a key podman 4.3 can mount unchanged (see podman43_secret_value).
            key_file.write_text(secrets.token_hex(24) + "\n")
    keys = [ln.strip() for ln in key_file.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    if not keys:
        raise SystemExit(f"kubeplay: no key in {key_file}")
    return keys


def _default_image() -> str:
    if IMAGE_REF_FILE.exists():
        return IMAGE_REF_FILE.read_text().strip()
    return "localhost/riskserve:latest"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "render"))
    parser.add_argument("--image", default=None,
                        help="image reference (default: the last `make image`)")
    parser.add_argument("--key-file", type=Path, default=None,
                        help=f"API keys, one per line (default: {PLAY_DIR}/api-key, generated)")
    parser.add_argument("--http-port", type=int, default=3000)
    parser.add_argument("--grpc-port", type=int, default=3001)
    parser.add_argument("--release", default=RELEASE)
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for /readyz")
    args = parser.parse_args(argv)
    image = args.image or _default_image()

    if args.command == "down":
        removed = down(args.release)
        print("removed: " + (", ".join(removed) if removed else "nothing (already down)"))
        return 0
    if args.command == "render":
        play = adapt(render(image, _keys(args.key_file), args.http_port, args.grpc_port,
                            args.release), podman_version(), args.release)
        print(play.yaml(redact=True), end="")
        for note in play.notes:
            print(f"# adapted: {note}", file=sys.stderr)
        return 0
    try:
        play = up(image, _keys(args.key_file), args.http_port, args.grpc_port, args.release,
                  args.timeout)
    except RuntimeError as exc:
        print(f"kubeplay: {exc}", file=sys.stderr)
        return 1
    key_file = args.key_file or PLAY_DIR / "api-key"
    for note in play.notes:
        print(f"adapted: {note}")
    print(f"\npod {play.pod} is ready on http://127.0.0.1:{args.http_port} "
          f"(gRPC 127.0.0.1:{args.grpc_port}); image {image}")
    # The key of the first key line (a line may go on with name= / models= / rate= fields).
    first_key = "awk '!/^[[:space:]]*(#|$)/ { print $1; exit }'"
    print(f"key:  export RISKSERVE_API_KEY=\"$({first_key} {key_file})\"")
    print(f"try:  curl -s -H \"X-API-Key: $RISKSERVE_API_KEY\" "
          f"http://127.0.0.1:{args.http_port}/v1/models")
    print(f"down: {os.path.relpath(__file__)} down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
