"""The real image and the chart's real pod spec, running under podman on this machine.

`container` tests (opt-in: `make test-container`, or RISKSERVE_CONTAINER_TESTS=1) use the image
`make image` built (k8s/image/build.sh; $RISKSERVE_IMAGE names another one):

* the image started with host networking on loopback: /readyz, an authenticated prediction over
  HTTP and over gRPC (Open Inference Protocol, tritonclient), wrong keys refused on both,
  /metrics, and a graceful stop;
* `podman kube play` of the chart's rendered Deployment + Secret + ConfigMap
  (k8s/image/kubeplay.py): the pod starts with the Secret's key mounted as a file, answers on
  127.0.0.1, refuses a wrong key, and is torn down without leftovers.

Every container, pod, secret and volume is removed at the end, also when a test fails.
The unmarked tests check the build helpers offline and run in the default suite.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from riskserve.core.specs import SPECS
from riskserve.devtools import helm as ht
from riskserve.devtools.server import REPO, free_port

IMAGE_DIR = REPO / "k8s" / "image"
PODMAN = IMAGE_DIR / "podman.sh"
BUILD = IMAGE_DIR / "build.sh"
IMAGE_REF_FILE = REPO / ".cache" / "image" / "image-ref"
FRAUD_ROW = {"step": 1, "type": "TRANSFER", "amount": 181.0, "oldbalance_org": 181.0,
             "newbalance_orig": 0.0, "oldbalance_dest": 0.0, "newbalance_dest": 0.0}
PREDICT_BODY = {"model": "fraud", "inputs": [FRAUD_ROW]}
READY_TIMEOUT_S = 180.0
BUILD_TIMEOUT_S = 3600.0


def load_module(name: str) -> ModuleType:
    """Import a helper script of k8s/image (not a package) by path."""
    spec = importlib.util.spec_from_file_location(f"k8s_image_{name}", IMAGE_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


buildinfo = load_module("buildinfo")
kubeplay = load_module("kubeplay")


# ---- offline checks of the build helpers (default suite) ------------------------------------


def test_image_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.fail("shellcheck not installed: run `make deps` (Debian package shellcheck)")
    scripts = sorted(str(p) for p in IMAGE_DIR.glob("*.sh"))
    assert len(scripts) >= 3
    proc = subprocess.run([shellcheck, "-x", *scripts], capture_output=True, text=True,
                          check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_podman_bentofile_changes_only_the_base_image() -> None:
    default = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    podman = buildinfo.podman_bentofile("localhost/riskserve-base:test")
    assert {k: v for k, v in podman.items() if k != "docker"} == \
        {k: v for k, v in default.items() if k != "docker"}
    assert podman["docker"] == {"base_image": "localhost/riskserve-base:test",
                                "python_version": default["docker"]["python_version"]}


def test_podman_bento_packs_the_service_and_not_the_devtools() -> None:
    """The generated podman bentofile keeps bentofile.yaml's include/exclude: service.py and the
    package, without riskserve/devtools (test and benchmark tooling)."""
    packed = {str(p.relative_to(REPO))
              for p in buildinfo.included_files(buildinfo.podman_bentofile("localhost/x:y"))}
    assert {"service.py", "riskserve/settings.py", "riskserve/oip/grpc_server.py"} <= packed
    assert not [p for p in packed if p.startswith(("riskserve/devtools/", "tests/"))]
    assert any(p.endswith(".proto") for p in packed)


def test_image_tooling_sets_no_python_path() -> None:
    """The project is an installed package (`pip install -e .`): no PYTHONPATH or sys.path."""
    for path in sorted(IMAGE_DIR.glob("*.*")):
        if path.suffix in {".py", ".sh"}:
            text = path.read_text()
            assert "PYTHONPATH" not in text and "sys.path" not in text, path.name


def test_index_settings_become_uv_config_and_read_only_mounts(tmp_path: Path) -> None:
    (tmp_path / "pypi" / "simple").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# cap\ntorch<=2.14.1\n\n")
    settings = buildinfo.IndexSettings(
        index_url="https://pypi.org/simple",
        extra_index_urls=[f"file://{tmp_path}/pypi/simple", "https://example.invalid/simple"],
        find_links=[str(tmp_path / "wheels")], cert=str(ca),
        constraint_files=[str(constraints)])
    mirrors = buildinfo.write_index(tmp_path / "out", settings)
    assert mirrors == [tmp_path / "pypi", tmp_path / "wheels"]
    uv = (tmp_path / "out" / "uv.toml").read_text()
    assert 'index-url = "https://pypi.org/simple"' in uv
    assert f'extra-index-url = ["file://{tmp_path}/pypi/simple", ' in uv
    assert 'index-strategy = "unsafe-best-match"' in uv
    assert 'python-downloads = "never"' in uv and "system-certs = true" in uv
    assert 'constraint-dependencies = ["torch<=2.14.1"]' in uv
    pip = (tmp_path / "out" / "pip.conf").read_text()
    assert "cert = /run/riskserve-build/ca.crt" in pip
    assert (tmp_path / "out" / "ca.crt").read_text() == ca.read_text()


def rendered_play(version: tuple[int, int], key: str) -> Any:
    objects = kubeplay.render("localhost/riskserve:abc123", [key], 3100, 3101, "riskserve-unit")
    return kubeplay.adapt(objects, version, "riskserve-unit")


def test_kube_play_adaptation_changes_only_what_podman_cannot_run() -> None:
    key = secrets.token_hex(24)
    play = rendered_play((4, 3), key)
    assert ht.kinds(play.objects) == ["ConfigMap", "Deployment", "Secret"]
    spec = ht.one(play.objects, "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == "localhost/riskserve:abc123"
    assert container["args"] == ["--host=127.0.0.1"]
    assert not {"ports", "startupProbe", "livenessProbe", "readinessProbe",
                "lifecycle"} & set(container)
    # What the chart promises stays: read-only root, non-root user, keys as a mounted file.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsUser"] == 1034
    env = ht.container_env(container)
    assert env["RISKSERVE_API_KEYS_FILE"] == "/etc/riskserve/api-keys/api-keys"
    assert "RISKSERVE_API_KEYS" not in env
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert set(volumes) == {"riskserve-unit-tmp", "riskserve-unit-bentoml-home", "api-keys"}
    assert volumes["api-keys"]["secret"]["optional"] is False
    assert {m["name"] for m in container["volumeMounts"]} == set(volumes)
    assert ht.one(play.objects, "Secret")["data"] == {"api-keys": key}
    config = ht.one(play.objects, "ConfigMap")["data"]
    assert config["RISKSERVE_GRPC_HOST"] == "127.0.0.1"
    assert (config["BENTOML_PORT"], config["RISKSERVE_GRPC_PORT"]) == ("3100", "3101")
    assert len(play.notes) == 8 and all(len(note) > 40 for note in play.notes)
    # The grace period the chart computed stays: podman kube play honours it.
    assert spec["terminationGracePeriodSeconds"] == 75
    assert key not in play.yaml(redact=True)


def test_kube_play_keeps_secret_data_encoded_for_fixed_podman() -> None:
    key = secrets.token_hex(24)
    play = rendered_play((4, 4), key)
    data = ht.one(play.objects, "Secret")["data"]["api-keys"]
    assert base64.b64decode(data).decode() == key + "\n"


def test_podman43_secret_needs_one_canonical_base64_key() -> None:
    hex_key = secrets.token_hex(24)
    assert kubeplay.podman43_secret_value(base64.b64encode(f"{hex_key}\n".encode()).decode()) \
        == hex_key
    for bad in ("rs_not-base64-key!", f"{hex_key}\n{hex_key}", "abcdefghijklmnopq"):
        with pytest.raises(ValueError, match="canonical base64"):
            kubeplay.podman43_secret_value(base64.b64encode(bad.encode()).decode())


# ---- the image and the pod, running (opt-in) ------------------------------------------------


def podman(*args: str, check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """podman with this machine's settings (k8s/image/podman.sh)."""
    proc = subprocess.run([str(PODMAN), *args], capture_output=True, text=True, check=False,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, f"podman {' '.join(args)}: {proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """$RISKSERVE_IMAGE, else the image of this tree (k8s/image/build.sh: reused if built)."""
    if not shutil.which("podman"):
        pytest.fail("podman not found: run `make image-deps` (Debian's podman, buildah, runc, "
                    "debootstrap)")
    ref = os.environ.get("RISKSERVE_IMAGE", "").strip()
    if not ref:
        log = tmp_path_factory.mktemp("build") / "build.log"
        with log.open("wb") as fh:
            proc = subprocess.run(["bash", str(BUILD)], stdout=subprocess.PIPE, stderr=fh,
                                  timeout=BUILD_TIMEOUT_S, check=False, cwd=REPO)
        assert proc.returncode == 0, f"k8s/image/build.sh failed:\n{log.read_text()[-4000:]}"
        ref = proc.stdout.decode().strip().splitlines()[-1]
        assert ref == IMAGE_REF_FILE.read_text().strip()
    podman("image", "exists", ref)
    return ref


def hard_limit(kind: int, want: int) -> int:
    """`want`, or the host's hard limit when lower (runc cannot go above it)."""
    hard = resource.getrlimit(kind)[1]
    return want if hard == resource.RLIM_INFINITY else min(want, hard)


@dataclass
class Running:
    """A started riskserve container: where it listens and with which key."""

    name: str
    http_port: int
    grpc_port: int
    key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def logs(self) -> str:
        proc = podman("logs", self.name, check=False)
        return proc.stdout + proc.stderr


def wait_ready(url: str, name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll /readyz with a deadline; fail early with the logs if the container stops."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Status}}", name, check=False)
        if state.returncode != 0 or state.stdout.strip() != "running":
            logs = podman("logs", "--tail", "60", name, check=False)
            pytest.fail(f"{name} is {state.stdout.strip() or 'gone'}:\n{logs.stdout}{logs.stderr}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # polling interval, not synchronisation: the loop checks readiness
    logs = podman("logs", "--tail", "60", name, check=False)
    pytest.fail(f"{url}/readyz not ready after {timeout_s:.0f}s:\n{logs.stdout}{logs.stderr}")


@pytest.fixture(scope="module")
def running(image: str) -> Iterator[Running]:
    """The image started like a pod would start it, but on the host network, on loopback."""
    run = Running(f"riskserve-test-{secrets.token_hex(4)}", free_port(), free_port(),
                  secrets.token_urlsafe(24))
    nofile = hard_limit(resource.RLIMIT_NOFILE, 65536)
    nproc = hard_limit(resource.RLIMIT_NPROC, 32768)
    try:
        podman("run", "-d", "--name", run.name, "--network", "host",
               "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}",
               "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/var/lib/bentoml:rw,mode=1777",
               "-e", "BENTOML_HOME=/var/lib/bentoml", "-e", f"RISKSERVE_API_KEYS={run.key}",
               "-e", "RISKSERVE_GRPC_HOST=127.0.0.1", "-e", f"RISKSERVE_GRPC_PORT={run.grpc_port}",
               image, "--host", "127.0.0.1", "--port", str(run.http_port))
        wait_ready(run.url, run.name)
        yield run
    finally:
        podman("rm", "-f", "-t", "10", run.name, check=False)
    assert podman("container", "exists", run.name, check=False).returncode == 1


def listeners(port: int) -> set[str]:
    """Local addresses listening on a TCP port (the host's tables: host networking)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def predict(url: str, key: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", headers={"X-API-Key": key}, json=PREDICT_BODY,
                      timeout=30)


def fraud_version(url: str, key: str) -> str:
    resp = httpx.get(f"{url}/v1/models/fraud", headers={"X-API-Key": key}, timeout=30)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["version"])


@pytest.mark.container
def test_container_is_ready_and_listens_on_loopback_only(running: Running) -> None:
    assert httpx.get(f"{running.url}/readyz", timeout=5).status_code == 200
    assert httpx.get(f"{running.url}/livez", timeout=5).status_code == 200
    for port in (running.http_port, running.grpc_port):
        found = listeners(port)
        assert found and found <= LOOPBACK, f"port {port} listens on {found}"
    user = podman("inspect", "--format", "{{.Config.User}}", running.name).stdout.strip()
    assert user == "bentoml"


@pytest.mark.container
def test_container_predicts_over_http_with_the_key(running: Running) -> None:
    resp = predict(running.url, running.key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "fraud" and body["version"] == fraud_version(running.url, running.key)
    assert len(body["predictions"]) == 1 and body["predictions"][0] in body["classes"]
    assert sum(body["probabilities"][0]) == pytest.approx(1.0)


@pytest.mark.container
def test_container_refuses_missing_and_wrong_keys_over_http(running: Running) -> None:
    assert predict(running.url, "wrong-" + running.key).status_code == 401
    resp = httpx.post(f"{running.url}/v1/predict", json=PREDICT_BODY, timeout=30)
    assert resp.status_code == 401
    assert resp.json()["error"]


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels` (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


@pytest.mark.container
def test_container_metrics_count_the_prediction(running: Running) -> None:
    before = httpx.get(f"{running.url}/metrics", timeout=10)
    assert before.status_code == 200
    assert predict(running.url, running.key).status_code == 200
    after = httpx.get(f"{running.url}/metrics", timeout=10).text
    name = "riskserve_inference_seconds_count"
    assert metric_value(after, name, model="fraud") >= metric_value(before.text, name,
                                                                    model="fraud") + 1
    assert metric_value(after, "bentoml_service_request_total", endpoint="/v1/predict") >= 1


@pytest.mark.container
def test_container_grpc_health_and_authenticated_inference(running: Running) -> None:
    """Standard gRPC health, then the Open Inference Protocol with tritonclient."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    target = f"127.0.0.1:{running.grpc_port}"
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING

    client = grpcclient.InferenceServerClient(target)
    try:
        assert client.is_server_live()
        inputs = []
        for feature in SPECS["fraud"].features:
            value = FRAUD_ROW[feature.name]
            if feature.is_category:
                array, datatype = np.array([str(value)], dtype=object), "BYTES"
            elif feature.kind == "int":
                array, datatype = np.array([value], dtype=np.int64), "INT64"
            else:
                array, datatype = np.array([value], dtype=np.float64), "FP64"
            tensor = grpcclient.InferInput(feature.name, [1], datatype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = client.infer("fraud", inputs, headers={"x-api-key": running.key})
        expected = predict(running.url, running.key).json()
        assert result.as_numpy("predict").tolist() == expected["predictions"]
        np.testing.assert_allclose(result.as_numpy("predict_proba"), expected["probabilities"],
                                   rtol=1e-12)
        with pytest.raises(InferenceServerException) as refused:
            client.infer("fraud", inputs, headers={"x-api-key": "wrong-" + running.key})
        assert "UNAUTHENTICATED" in str(refused.value.status())
    finally:
        client.close()


@pytest.mark.container
def test_container_stops_gracefully(running: Running) -> None:
    started = time.monotonic()
    podman("stop", "-t", "30", running.name, timeout=60)
    assert time.monotonic() - started < 30, "SIGTERM did not stop the server: podman killed it"
    state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                   running.name).stdout.split()
    assert state[0] == "exited" and state[1] in {"0", "143"}, state
    assert "Service instance cleanup finalized" in running.logs()


# ---- the chart's pod under podman kube play (opt-in) ----------------------------------------


@dataclass
class KubePod:
    """A release played by kubeplay.up, with its ports and key."""

    play: Any
    http_port: int
    grpc_port: int
    key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@pytest.fixture(scope="module")
def kube_pod(image: str) -> Iterator[KubePod]:
    release = f"riskserve-test-{secrets.token_hex(3)}"
    # Hex: one key podman 4.3 can mount unchanged (kubeplay.podman43_secret_value).
    pod = KubePod(None, free_port(), free_port(), secrets.token_hex(24))
    try:
        try:
            pod.play = kubeplay.up(image, [pod.key], pod.http_port, pod.grpc_port, release,
                                   READY_TIMEOUT_S)
        except RuntimeError as exc:
            pytest.fail(f"kubeplay up failed: {exc}")
        yield pod
    finally:
        kubeplay.down(release)
    assert podman("pod", "exists", f"{release}-pod-0", check=False).returncode == 1


@pytest.mark.container
def test_kube_pod_serves_with_the_secret_key_on_loopback(kube_pod: KubePod) -> None:
    resp = predict(kube_pod.url, kube_pod.key)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "fraud"
    metrics = httpx.get(f"{kube_pod.url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert metric_value(metrics.text, "riskserve_inference_seconds_count", model="fraud") >= 1
    for port in (kube_pod.http_port, kube_pod.grpc_port):
        found = listeners(port)
        assert found and found <= LOOPBACK, f"port {port} listens on {found}"


@pytest.mark.container
def test_kube_pod_refuses_a_wrong_key(kube_pod: KubePod) -> None:
    assert predict(kube_pod.url, "0" * 48).status_code == 401
    assert predict(kube_pod.url, kube_pod.key[::-1]).status_code == 401


@pytest.mark.container
def test_kube_pod_runs_the_charts_pod_spec(kube_pod: KubePod) -> None:
    """The key comes from the Secret as a file; root is read-only; writes go to the emptyDirs."""
    container = kube_pod.play.container
    fmt = "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NetworkMode}}"
    user, readonly, network = podman("inspect", "--format", fmt, container).stdout.split()
    assert (user.split(":")[0], readonly, network) == ("1034", "true", "host")
    mounted = podman("exec", container, "cat", "/etc/riskserve/api-keys/api-keys").stdout
    assert mounted.strip() == kube_pod.key
    env = podman("exec", container, "env").stdout
    assert "RISKSERVE_API_KEYS_FILE=/etc/riskserve/api-keys/api-keys" in env
    assert "RISKSERVE_API_KEYS=" not in env
    assert podman("exec", container, "touch", "/home/bentoml/x", check=False).returncode != 0
    listing = podman("exec", container, "ls", "/var/lib/bentoml").stdout.split()
    assert "prometheus_multiproc_dir" in listing


@pytest.mark.container
def test_kube_down_leaves_nothing_behind(kube_pod: KubePod) -> None:
    play = kube_pod.play
    removed = kubeplay.down(play.release)
    assert f"pod {play.pod}" in removed and f"secret {play.secret}" in removed
    assert podman("pod", "exists", play.pod, check=False).returncode == 1
    assert podman("secret", "inspect", play.secret, check=False).returncode != 0
    for volume in play.volumes:
        assert podman("volume", "exists", volume, check=False).returncode == 1
    assert kubeplay.down(play.release) == []
