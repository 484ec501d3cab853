"""The Helm chart and k8s/ setup, checked offline: lint, render, Kubernetes schemas, drift.

No cluster is needed: helm (pinned, fetched once by k8s/fetch-helm.sh) renders the chart and
kubernetes-validate's bundled schemas check every object for Kubernetes 1.29-1.33. The last part
proves each check fails on the breakage it exists for.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskserve.devtools import helm as ht

# The fetched helm is a linux/amd64 binary; elsewhere RISKSERVE_HELM must name a helm 3.
_PLATFORM = (os.uname().sysname, os.uname().machine)
_NO_HELM_HERE = _PLATFORM != ("Linux", "x86_64") and not os.environ.get(ht.HELM_ENV)
pytestmark = pytest.mark.skipif(
    _NO_HELM_HERE, reason=f"the npm-packaged helm is linux/amd64 only: set {ht.HELM_ENV}"
)

FRAUD_BODY = {
    "model": "fraud",
    "inputs": [
        {
            "step": 1,
            "type": "TRANSFER",
            "amount": 181.0,
            "oldbalance_org": 181.0,
            "newbalance_orig": 0.0,
            "oldbalance_dest": 0.0,
            "newbalance_dest": 0.0,
        }
    ],
}
BENTOML_UID = 1034
# Every values set the chart must render cleanly: defaults, each ci/ toggle, the local cluster's.
VALUES_SETS: dict[str, tuple[Path, ...]] = {
    "defaults": (),
    **{path.name: (path,) for path in ht.ci_values_files()},
    "k8s/riskserve-values.yaml": (ht.K8S_VALUES_FILE,),
}


@functools.cache
def rendered(name: str, kube_version: str = ht.K8S_VERSIONS[0]) -> tuple[dict[str, Any], ...]:
    """Objects of one values set, rendered once per test session."""
    return tuple(ht.render(values_files=VALUES_SETS[name], kube_version=kube_version))


def ci(name: str) -> tuple[dict[str, Any], ...]:
    """Objects rendered with ci/<name>-values.yaml."""
    return rendered(f"{name}-values.yaml")


# --------------------------------------------------------------------------- helm itself


def test_helm_is_the_pinned_version() -> None:
    proc = ht.run_helm("version", "--short")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(ht.HELM_VERSION), proc.stdout


def test_fetched_helm_matches_the_pinned_sha256() -> None:
    if os.environ.get(ht.HELM_ENV):
        pytest.skip(f"{ht.HELM_ENV} overrides the fetched helm")
    script = ht.FETCH_HELM.read_text()
    pinned = re.search(r'^HELM_SHA256="([0-9a-f]{64})"$', script, re.M)
    assert pinned, "k8s/fetch-helm.sh must pin HELM_SHA256"
    digest = hashlib.sha256(ht.helm_binary().read_bytes()).hexdigest()
    assert digest == pinned[1]
    assert f'HELM_VERSION="{ht.HELM_VERSION}"' in script


def test_fetch_script_rejects_a_tampered_binary(tmp_path: Path) -> None:
    """A cached helm whose sha256 is wrong is not used; with npm unreachable the script fails."""
    if os.environ.get(ht.HELM_ENV):
        pytest.skip(f"{ht.HELM_ENV} overrides the fetched helm")
    cached = tmp_path / f"helm-{ht.HELM_VERSION}" / "helm"
    cached.parent.mkdir()
    cached.write_bytes(ht.helm_binary().read_bytes() + b"tampered")
    cached.chmod(0o755)
    no_npm_path = tmp_path / "bin"
    no_npm_path.mkdir()
    for tool in ("bash", "uname", "sha256sum", "cut", "mktemp", "dirname", "rm", "mkdir"):
        found = shutil.which(tool)
        assert found, tool
        (no_npm_path / tool).symlink_to(found)
    env = {"PATH": str(no_npm_path), "RISKSERVE_TOOLS_DIR": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(ht.FETCH_HELM)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode != 0
    assert str(cached) not in proc.stdout
    assert "npm not found" in proc.stderr


def test_fetch_script_reuses_a_verified_binary(tmp_path: Path) -> None:
    if os.environ.get(ht.HELM_ENV):
        pytest.skip(f"{ht.HELM_ENV} overrides the fetched helm")
    cached = tmp_path / f"helm-{ht.HELM_VERSION}" / "helm"
    cached.parent.mkdir()
    shutil.copy2(ht.helm_binary(), cached)
    env = {**os.environ, "RISKSERVE_TOOLS_DIR": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(ht.FETCH_HELM)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(cached)


# --------------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("name", list(VALUES_SETS))
def test_lint_strict(name: str) -> None:
    proc = ht.lint(values_files=VALUES_SETS[name])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", list(VALUES_SETS))
def test_rendered_objects_are_valid_for_kubernetes_1_29_to_1_33(name: str) -> None:
    for version in ht.K8S_VERSIONS:
        problems = ht.validate_all(rendered(name, version), versions=(version,))
        assert problems == [], "\n".join(problems)


def test_cached_validator_agrees_with_kubernetes_validate() -> None:
    """helm_tools reads kubernetes-validate's schema files itself (cached); same verdicts."""
    import kubernetes_validate

    deployment = ht.one(rendered("defaults"), "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "two"
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    for version in (ht.K8S_VERSIONS[0], ht.K8S_VERSIONS[-1]):
        assert ht.validate_k8s(deployment, version) == []
        kubernetes_validate.validate(deployment, f"{version}.0", strict=True)
        assert len(ht.validate_k8s(broken, version)) == 2
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, f"{version}.0", strict=True)


def test_pdb_uses_min_available_when_given() -> None:
    assert ht.one(ci("pdb-min-available"), "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": ht.one(rendered("defaults"), "PodDisruptionBudget")["spec"]["selector"],
    }
    assert ht.one(rendered("defaults"), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_every_toggle_has_a_ci_values_file() -> None:
    toggles = {
        "autoscaling": "autoscaling",
        "podDisruptionBudget": "pdb-disabled",
        "networkPolicy": "networkpolicy",
        "serviceMonitor": "servicemonitor",
        "prometheusRule": "prometheusrule",
        "dashboards": "dashboards",
        "tests": "tests-disabled",
    }
    values = yaml.safe_load(ht.VALUES_FILE.read_text())
    enabled_keys = {k for k, v in values.items() if isinstance(v, dict) and "enabled" in v}
    assert enabled_keys == set(toggles)
    for key, stem in toggles.items():
        path = ht.CI_DIR / f"{stem}-values.yaml"
        assert path.is_file(), path
        assert key in yaml.safe_load(path.read_text())


def test_default_objects_and_monitoring_opt_in() -> None:
    objects = rendered("defaults")
    assert ht.kinds(objects) == [
        "ConfigMap",
        "Deployment",
        "Pod",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    assert not [obj for obj in objects if ht.is_monitoring(obj)]


@pytest.mark.parametrize(
    ("ci_name", "present", "absent"),
    [
        ("autoscaling", {"HorizontalPodAutoscaler"}, set()),
        ("networkpolicy", {"NetworkPolicy"}, set()),
        ("servicemonitor", {"ServiceMonitor"}, {"PrometheusRule"}),
        ("prometheusrule", {"PrometheusRule"}, {"ServiceMonitor"}),
        ("monitoring", {"ServiceMonitor", "PrometheusRule"}, set()),
        ("pdb-disabled", set(), {"PodDisruptionBudget"}),
        ("serviceaccount", set(), {"ServiceAccount"}),
        ("existing-secret", set(), {"Secret"}),
        ("auth-disabled", set(), {"Secret"}),
        ("tests-disabled", set(), {"Pod"}),
    ],
)
def test_toggles_add_and_remove_their_objects(
    ci_name: str, present: set[str], absent: set[str]
) -> None:
    found = set(ht.kinds(ci(ci_name)))
    assert present <= found
    assert not absent & found


def test_hpa_takes_over_the_replica_count() -> None:
    deployment = ht.one(ci("autoscaling"), "Deployment")
    hpa = ht.one(ci("autoscaling"), "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    metrics = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
    assert metrics == {
        "cpu": {"type": "Utilization", "averageUtilization": 60},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    assert ht.one(rendered("defaults"), "Deployment")["spec"]["replicas"] == 2


def test_kube_version_floor_is_enforced() -> None:
    with pytest.raises(ht.HelmError, match="kubeVersion"):
        ht.template(kube_version="1.26.0")


# --------------------------------------------------------------------------- the server pod


def test_pod_runs_non_root_with_a_read_only_root_filesystem() -> None:
    deployment = ht.one(rendered("defaults"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = ht.server_container(rendered("defaults"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == BENTOML_UID
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_writable_paths_are_empty_dirs_and_bentoml_home_points_at_one() -> None:
    objects = rendered("defaults")
    pod = ht.one(objects, "Deployment")["spec"]["template"]["spec"]
    container = ht.server_container(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    env = ht.container_env(container)
    for path in ("/tmp", env["BENTOML_HOME"]):
        assert "emptyDir" in volumes[mounts[path]], path
    # BentoML puts the Prometheus multiprocess dir under BENTOML_HOME and rmtree()s it on start,
    # so the emptyDir must be its parent, never the directory itself.
    assert not any(p.endswith("prometheus_multiproc_dir") for p in mounts)
    assert env["TMPDIR"] == "/tmp"


def test_api_keys_come_from_a_mounted_secret_file_not_env() -> None:
    objects = rendered("defaults")
    container = ht.server_container(objects)
    pod = ht.one(objects, "Deployment")["spec"]["template"]["spec"]
    env = ht.container_env(container)
    key_file = Path(env["RISKSERVE_API_KEYS_FILE"])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(key_file.parent))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    secret = ht.one(objects, "Secret")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert key_file.name in secret["data"]
    all_env = {e["name"] for e in container["env"]} | set(ht.one(objects, "ConfigMap")["data"])
    assert "RISKSERVE_API_KEYS" not in all_env


def test_generated_key_when_none_is_given() -> None:
    secret = ht.one(rendered("defaults"), "Secret")
    lines = base64.b64decode(secret["data"]["api-keys"]).decode().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"[A-Za-z0-9]{40}", lines[0])


def test_given_keys_are_stored_one_line_each_and_parse_as_scoped_keys() -> None:
    from riskserve.keyfile import parse_line

    objects = ci("api-keys")
    values = yaml.safe_load((ht.CI_DIR / "api-keys-values.yaml").read_text())
    secret = ht.one(objects, "Secret")
    content = base64.b64decode(secret["data"]["api-keys"]).decode()
    assert content.splitlines() == values["auth"]["apiKeys"]
    entries = [parse_line(line, f"line {n}") for n, line in enumerate(content.splitlines(), 1)]
    scoped = next(e for e in entries if e is not None and e.name == "loan-team")
    assert scoped.models == frozenset({"risk-flag", "fraud"}) and scoped.rate == 20.0
    # Rotation reaches the pods through the mounted file: a key change must not roll them.
    annotations = ht.one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


@pytest.mark.parametrize(
    "line",
    [
        "ci-plain-key-0123456789abcdef models=loans",
        "ci-plain-key-0123456789abcdef rate=fast",
        "ci-plain-key-0123456789abcdef name=two words",
        "ci-plain-key-0123456789abcdef team=risk",
    ],
)
def test_malformed_key_line_is_rejected_by_the_schema(line: str) -> None:
    with pytest.raises(ht.HelmError, match=r"auth\.apiKeys\.0"):
        ht.template(set_strings=[f"auth.apiKeys[0]={line}"])


def test_key_line_schema_knows_every_model() -> None:
    from riskserve.core.specs import MODEL_NAMES

    line = f"ci-plain-key-0123456789abcdef name=all models={','.join(MODEL_NAMES)} rate=2.5"
    escaped = line.replace(",", "\\,")  # --set splits on unescaped commas
    secret = ht.one(ht.render(sets=[f"auth.apiKeys[0]={escaped}"]), "Secret")
    assert base64.b64decode(secret["data"]["api-keys"]).decode() == line + "\n"


@pytest.mark.parametrize("name", [n for n in VALUES_SETS if "auth-disabled" not in n])
def test_key_secret_is_a_directory_mount_so_rotation_reaches_the_pod(name: str) -> None:
    """kubelet updates Secret volumes in place only without subPath (a subPath file never
    changes); the key file must sit inside the mounted directory."""
    objects = rendered(name)
    container = ht.server_container(objects)
    key_file = Path(ht.container_env(container)["RISKSERVE_API_KEYS_FILE"])
    assert not [m for m in container["volumeMounts"] if "subPath" in m or "subPathExpr" in m]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "api-keys")
    assert key_file.parent == Path(mount["mountPath"])
    pod = ht.one(objects, "Deployment")["spec"]["template"]["spec"]
    secret = next(v["secret"] for v in pod["volumes"] if v["name"] == "api-keys")
    assert [item["path"] for item in secret.get("items", [])] in ([], [key_file.name])


def test_existing_secret_is_mounted_and_auth_disabled_mounts_nothing() -> None:
    container = ht.server_container(ci("existing-secret"))
    pod = ht.one(ci("existing-secret"), "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "riskserve-api-keys"
    assert ht.container_env(container)["RISKSERVE_API_KEYS_FILE"].endswith("/keys")
    disabled = ci("auth-disabled")
    assert ht.one(disabled, "ConfigMap")["data"]["RISKSERVE_AUTH_DISABLED"] == "true"
    assert "RISKSERVE_API_KEYS_FILE" not in ht.container_env(ht.server_container(disabled))


def test_config_is_every_setting_with_its_env_name_and_parses() -> None:
    from riskserve.settings import Settings

    data = ht.one(rendered("defaults"), "ConfigMap")["data"]
    assert data["BENTOML_DO_NOT_TRACK"] == "true"
    assert data["BENTOML_PORT"] == data["RISKSERVE_HTTP_PORT"] == "3000"
    assert data["RISKSERVE_GRPC_PORT"] == "3001"
    names = {k.removeprefix("RISKSERVE_").lower() for k in data if k.startswith("RISKSERVE_")}
    fields = set(Settings.model_fields)
    assert names <= fields, names - fields
    # Keys arrive through the mounted file (Deployment env), never through the ConfigMap.
    assert fields - names == {"api_keys", "api_keys_file"}
    env = {k: v for k, v in data.items() if k.startswith("RISKSERVE_")}
    settings = Settings(
        _env_file=None, **{k.removeprefix("RISKSERVE_").lower(): v for k, v in env.items()}
    )
    defaults = Settings(_env_file=None)
    for name in names:
        assert getattr(settings, name) == getattr(defaults, name), name


def test_config_change_rolls_the_pods() -> None:
    def checksum(*sets: str) -> str:
        deployment = ht.one(ht.render(sets=sets), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("config.workers=2")


# Settings whose values key lives outside `config`, because the chart uses the value there too.
SETTINGS_OUTSIDE_CONFIG = {
    "http_port": "containerPorts.http",
    "grpc_port": "containerPorts.grpc",
    "grpc_host": "(fixed: 0.0.0.0 inside a pod)",
    "auth_disabled": "auth.disabled",
    "shadow_rate": "shadow.rate",
}


def test_every_setting_has_one_values_key_named_after_its_env_var() -> None:
    from riskserve.settings import Settings

    values = yaml.safe_load(ht.VALUES_FILE.read_text())
    data = ht.one(rendered("defaults"), "ConfigMap")["data"]
    from_config = {ht.config_env_name(key) for key in values["config"]}
    assert from_config <= set(data), from_config - set(data)
    fields = {f"RISKSERVE_{name.upper()}" for name in Settings.model_fields}
    outside = {f"RISKSERVE_{name.upper()}" for name in SETTINGS_OUTSIDE_CONFIG}
    assert from_config.isdisjoint(outside)
    assert from_config | outside == fields - {"RISKSERVE_API_KEYS", "RISKSERVE_API_KEYS_FILE"}
    # Each config key's one description names the variable it becomes.
    docs = {doc.key: doc.description for doc in ht.values_docs()}
    for key in values["config"]:
        assert docs[f"config.{key}"].startswith(f"{ht.config_env_name(key)}: "), key


def test_config_maps_and_decimals_render_as_the_settings_parse_them() -> None:
    from riskserve.settings import Settings

    sets = [
        "config.modelMaxConcurrencyOverrides.keystroke-rf=8",
        "config.modelMaxConcurrencyOverrides.fraud=256",
        "config.requestTimeoutS=12.5",  # --set passes decimals as strings: the schema takes both
        "config.csvMaxBytes=1073741824",
        "shadow.rate=0.25",
        "preStopSleepSeconds=5",
    ]
    data = ht.one(ht.render(sets=sets), "ConfigMap")["data"]
    assert data["RISKSERVE_MODEL_MAX_CONCURRENCY_OVERRIDES"] == "fraud=256,keystroke-rf=8"
    assert data["RISKSERVE_SHADOW_RATE"] == "0.25"
    env = {k.removeprefix("RISKSERVE_").lower(): v for k, v in data.items() if "RISKSERVE_" in k}
    settings = Settings(_env_file=None, **env)
    assert settings.request_timeout_s == 12.5 and settings.csv_max_bytes == 1 << 30
    assert settings.shadow_rate == 0.25
    for bad in ("shadow.rate=1.5", "config.modelMaxConcurrencyOverrides.frod=2"):
        with pytest.raises(ht.HelmError, match=bad.split("=")[0].rsplit(".", 1)[0]):
            ht.template(sets=[bad])


def test_override_names_in_the_schema_are_the_models() -> None:
    from riskserve.core.specs import MODEL_NAMES

    schema = json.loads(ht.SCHEMA_FILE.read_text())
    overrides = schema["properties"]["config"]["properties"]["modelMaxConcurrencyOverrides"]
    assert overrides["propertyNames"]["enum"] == list(MODEL_NAMES)


def test_shadow_rate_is_documented_and_reaches_the_config_map() -> None:
    docs = {doc.key: doc.description for doc in ht.values_docs()}
    assert docs["shadow"] and docs["shadow.rate"].startswith("RISKSERVE_SHADOW_RATE: ")
    assert ht.one(rendered("defaults"), "ConfigMap")["data"]["RISKSERVE_SHADOW_RATE"] == "1"
    assert ht.one(ci("pod-options"), "ConfigMap")["data"]["RISKSERVE_SHADOW_RATE"] == "0.1"
    off = ht.one(ht.render(sets=["shadow.rate=0"]), "ConfigMap")["data"]
    assert off["RISKSERVE_SHADOW_RATE"] == "0"


def test_probes_use_livez_and_readyz_on_the_http_port() -> None:
    container = ht.server_container(rendered("defaults"))
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 3000, "grpc": 3001}


# The probes as the chart rendered them field by field before they were passed whole.
DEFAULT_PROBES = {
    "startupProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 5,
                     "timeoutSeconds": 3, "failureThreshold": 60},
    "livenessProbe": {"httpGet": {"path": "/livez", "port": "http"}, "periodSeconds": 10,
                      "timeoutSeconds": 3, "failureThreshold": 3},
    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5,
                       "timeoutSeconds": 3, "failureThreshold": 3},
}


def test_default_probes_are_unchanged_and_any_probe_field_passes_through() -> None:
    container = ht.server_container(rendered("defaults"))
    assert {name: container[name] for name in DEFAULT_PROBES} == DEFAULT_PROBES
    probes = ht.server_container(ci("probes"))
    assert probes["livenessProbe"]["grpc"] == {"port": 3001}  # filled from containerPorts.grpc
    assert "httpGet" not in probes["livenessProbe"]
    assert probes["livenessProbe"]["initialDelaySeconds"] == 20
    assert probes["startupProbe"]["tcpSocket"] == {"port": "http"}
    assert probes["readinessProbe"] == {
        **DEFAULT_PROBES["readinessProbe"], "initialDelaySeconds": 10, "successThreshold": 2
    }
    assert "startupProbe" not in ht.server_container(ci("pod-options"))


def test_probe_with_two_handlers_fails_with_a_clear_message() -> None:
    message = r"probes\.liveness needs exactly one handler .*probes\.liveness\.httpGet: null"
    with pytest.raises(ht.HelmError, match=message):
        ht.template(sets=["probes.liveness.grpc.port=3001"])
    with pytest.raises(ht.HelmError, match=r"initialDelaySecond is not allowed"):
        ht.template(sets=["probes.readiness.initialDelaySecond=5"])


def _grace_budget(objects: tuple[dict[str, Any], ...]) -> tuple[int, int, float]:
    """(terminationGracePeriodSeconds, preStop sleep seconds, request timeout) of a render."""
    pod = ht.one(objects, "Deployment")["spec"]["template"]["spec"]
    hook = pod["containers"][0].get("lifecycle", {}).get("preStop")
    sleep = 0
    if hook is not None:
        assert hook["exec"]["command"][0] == "sleep", hook
        sleep = int(hook["exec"]["command"][1])
    timeout = float(ht.server_config(objects)["RISKSERVE_REQUEST_TIMEOUT_S"])
    return pod["terminationGracePeriodSeconds"], sleep, timeout


@pytest.mark.parametrize("name", list(VALUES_SETS))
def test_grace_period_covers_the_prestop_sleep_and_the_request_timeout(name: str) -> None:
    grace, sleep, timeout = _grace_budget(rendered(name))
    assert grace >= sleep + timeout, (grace, sleep, timeout)


def test_prestop_sleeps_before_sigterm_and_the_grace_period_is_computed() -> None:
    container = ht.server_container(rendered("defaults"))
    # exec `sleep` (Debian image), not the native `sleep` action: that one is alpha and off by
    # default on Kubernetes 1.29 and absent before; the chart supports 1.27 and later.
    assert container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "10"]}}}
    assert _grace_budget(rendered("defaults")) == (75, 10, 60.0)
    assert _grace_budget(ci("pod-options")) == (50, 15, 30.0)
    no_hook = ht.render(sets=["preStopSleepSeconds=0", "config.requestTimeoutS=12.5"])
    assert "lifecycle" not in ht.server_container(no_hook)
    assert _grace_budget(tuple(no_hook)) == (18, 0, 12.5)


def test_too_short_grace_period_fails_with_the_budget() -> None:
    with pytest.raises(ht.HelmError, match=r"terminationGracePeriodSeconds \(30\) must be at "
                       r"least preStopSleepSeconds \(10\) \+ config.requestTimeoutS \(60\) = 70"):
        ht.template(sets=["terminationGracePeriodSeconds=30"])
    deployment = ht.one(ht.render(sets=["terminationGracePeriodSeconds=70"]), "Deployment")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 70


def test_service_exposes_http_and_grpc_with_app_protocols() -> None:
    objects = rendered("defaults")
    service = ht.one(objects, "Service")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["http"]["port"] == 3000 and ports["http"]["appProtocol"] == "http"
    assert ports["grpc"]["port"] == 3001 and ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    pod_labels = ht.one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    test_pod = ht.one(objects, "Pod")
    assert not service["spec"]["selector"].items() <= test_pod["metadata"]["labels"].items()


def test_network_policy_admits_clients_prometheus_and_the_test_pod() -> None:
    objects = ci("networkpolicy")
    policy = ht.one(objects, "NetworkPolicy")
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    test_labels = ht.one(objects, "Pod")["metadata"]["labels"]
    pod_selectors = [p["podSelector"].get("matchLabels", {}) for p in peers if "podSelector" in p]
    # allowSameNamespace is false in this file: only the test pod's own selector admits it.
    assert {} not in pod_selectors
    assert any(sel.items() <= test_labels.items() for sel in pod_selectors)
    namespaces = [p["namespaceSelector"]["matchLabels"] for p in peers if "namespaceSelector" in p]
    assert {"kubernetes.io/metadata.name": "monitoring"} in namespaces
    assert {"kubernetes.io/metadata.name": "ingress-nginx"} in namespaces
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


# --------------------------------------------------------------------------- helm test pod


def test_helm_test_pod_checks_readyz_and_one_authenticated_prediction() -> None:
    objects = rendered("defaults")
    pod = ht.one(objects, "Pod")
    assert ht.is_test_hook(pod)
    script = pod["spec"]["containers"][0]["args"][0]
    assert '"$BASE_URL/readyz"' in script and '"$BASE_URL/v1/predict"' in script
    assert '-H "X-API-Key: $key"' in script
    body = re.search(r"body='(.+)'", script)
    assert body and json.loads(body[1]) == FRAUD_BODY
    env = ht.container_env(pod["spec"]["containers"][0])
    service = ht.one(objects, "Service")
    assert env["BASE_URL"] == f"http://{service['metadata']['name']}.{ht.NAMESPACE}.svc:3000"
    assert (
        pod["spec"]["volumes"][0]["secret"]["secretName"]
        == (ht.one(objects, "Secret")["metadata"]["name"])
    )
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


STUB_KEY = "stub-key-0123456789abcdef"
# A key the stub treats as scoped to other models: /v1/predict of fraud answers 403.
STUB_SCOPED_KEY = "stub-loan-team-key-0123456789"


class _StubRiskserve(http.server.BaseHTTPRequestHandler):
    """Just enough of riskserve for the test pod's script: /readyz, and /v1/predict with a key."""

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/readyz":
            self._reply(200, {})
        else:
            self._reply(404, {"error": "no route"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/predict":
            self._reply(404, {"error": "no route"})
        elif self.headers.get("X-API-Key") == STUB_SCOPED_KEY:
            self._reply(403, {"error": "key 'loan-team' may not use model 'fraud'"})
        elif self.headers.get("X-API-Key") != STUB_KEY:
            self._reply(401, {"error": "bad key"})
        elif body != FRAUD_BODY:
            self._reply(422, {"error": "unexpected body"})
        else:
            self._reply(200, {"model": "fraud", "version": "v1", "predictions": [0]})

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def stub_riskserve() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StubRiskserve)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl not installed")
@pytest.mark.parametrize(
    ("key_file_text", "passes", "says"),
    [
        (f"{STUB_KEY}\nsecond-key-ignored\n", True, "predict: ok"),
        ("wrong-key\n", False, "no \"predictions\""),
        # Comments and blank lines skipped, the line's fields after the key ignored, no newline.
        (f"# team keys\n\n  {STUB_KEY} name=ops models=* rate=5", True, "predict: ok"),
        (f"{STUB_SCOPED_KEY} name=loan-team models=risk-flag\n", False, "models=fraud"),
        ("sha256:" + "0" * 64 + "\n", False, "tests.apiKeySecret"),
    ],
    ids=["plain", "wrong", "scoped-line", "out-of-scope", "hashed"],
)
def test_helm_test_pod_script_runs_against_a_stub_server(
    stub_riskserve: str, tmp_path: Path, key_file_text: str, passes: bool, says: str
) -> None:
    """The pod's shell script, run here with curl: passes with the key, fails clearly without."""
    container = ht.one(rendered("defaults"), "Pod")["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-ec"]
    key_file = tmp_path / "api-key"
    key_file.write_text(key_file_text)
    env = {
        **ht.container_env(container),
        "PATH": os.environ["PATH"],
        "BASE_URL": stub_riskserve,
        "KEY_FILE": str(key_file),
    }
    proc = subprocess.run(
        ["sh", "-ec", container["args"][0]],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (proc.returncode == 0) is passes, proc.stdout + proc.stderr
    assert ("predict: ok" in proc.stdout) is passes
    assert says in proc.stdout + proc.stderr
    if passes:
        assert "name=<team> models=<m1>,<m2>" in proc.stdout  # how to make a scoped key


def test_helm_test_pod_reads_its_key_from_the_configured_secret() -> None:
    pod = ht.one(ci("existing-secret"), "Pod")
    secret = pod["spec"]["volumes"][0]["secret"]
    assert secret["secretName"] == "riskserve-test-key"
    assert secret["items"] == [{"key": "key", "path": "api-key"}]


def test_notes_tell_how_to_reach_the_service_and_get_a_key(tmp_path: Path) -> None:
    notes = ht.render_notes(tmp_path / "defaults")
    assert "port-forward svc/rs-riskserve 3000:http 3001:grpc" in notes
    assert "get secret rs-riskserve-api-keys -o jsonpath='{.data.api-keys}'" in notes
    assert "helm test rs -n riskserve" in notes
    existing = ht.render_notes(tmp_path / "existing", [ht.CI_DIR / "existing-secret-values.yaml"])
    assert "get secret riskserve-api-keys -o jsonpath='{.data.keys}'" in existing
    disabled = ht.render_notes(tmp_path / "disabled", [ht.CI_DIR / "auth-disabled-values.yaml"])
    assert "WARNING: auth.disabled=true" in disabled and "get secret" not in disabled


def test_notes_show_how_to_add_a_scoped_key_without_a_restart(tmp_path: Path) -> None:
    notes = ht.render_notes(tmp_path / "defaults")
    assert "name=loan-team models=risk-flag rate=20" in notes
    assert "create secret generic rs-riskserve-api-keys --from-file=api-keys=keys.txt" in notes
    assert "| kubectl apply -f -" in notes and "no restart" in notes
    # The key of the first line, not the whole line with its name= / models= fields.
    assert "base64 -d | awk '!/^[[:space:]]*(#|$)/ { print $1; exit }'" in notes
    given = ht.render_notes(tmp_path / "given", [ht.CI_DIR / "api-keys-values.yaml"])
    assert "add \"$line\" to auth.apiKeys and `helm upgrade`" in given
    assert "kubectl apply" not in given
    disabled = ht.render_notes(tmp_path / "disabled", [ht.CI_DIR / "auth-disabled-values.yaml"])
    assert "scoped key" not in disabled


# --------------------------------------------------------------------------- monitoring


def test_monitoring_objects_carry_the_kube_prometheus_stack_release_label() -> None:
    for ci_name, kind in (
        ("servicemonitor", "ServiceMonitor"),
        ("prometheusrule", "PrometheusRule"),
    ):
        assert ht.one(ci(ci_name), kind)["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert "release" not in ht.one(ci("monitoring"), kind)["metadata"]["labels"]


def test_service_monitor_scrapes_metrics_on_the_http_port() -> None:
    objects = ci("servicemonitor")
    monitor = ht.one(objects, "ServiceMonitor")
    assert ht.check_service_monitor(monitor, ht.by_kind(objects, "Service")) == []
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("http", "/metrics", "15s")


def test_prometheus_rule_spec_is_the_rules_file() -> None:
    objects = ci("prometheusrule")
    assert ht.check_prometheus_rule(ht.one(objects, "PrometheusRule")) == []
    assert ht.rules_drift(objects) == []


def test_dashboard_configmaps_are_the_dashboard_files() -> None:
    objects = ci("monitoring")
    configmaps = [
        cm
        for cm in ht.by_kind(objects, "ConfigMap")
        if cm["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards"
    ]
    assert len(configmaps) == len(list(ht.CHART_DASHBOARDS_DIR.glob("*.json"))) >= 2
    for cm in configmaps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert ht.dashboards_drift(objects) == []


def test_dashboard_label_is_configurable() -> None:
    for cm in ht.by_kind(ci("dashboards"), "ConfigMap"):
        if cm["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards":
            assert cm["metadata"]["labels"]["grafana_dashboard"] == "riskserve"
            assert cm["metadata"]["namespace"] == "monitoring"


# --------------------------------------------------------------------------- values documentation


def test_every_values_key_is_documented() -> None:
    assert ht.undocumented_keys() == []


def test_schema_declares_every_values_key() -> None:
    schema = json.loads(ht.SCHEMA_FILE.read_text())
    assert ht.schema_gaps(yaml.safe_load(ht.VALUES_FILE.read_text()), schema) == []
    assert schema["additionalProperties"] is False


def test_schema_descriptions_are_the_values_yaml_comments() -> None:
    schema = json.loads(ht.SCHEMA_FILE.read_text())
    assert ht.schema_with_descriptions(schema) == schema, (
        "regenerate: python -m riskserve.devtools.helm readme --write"
    )
    assert ht.schema_text(schema) == ht.SCHEMA_FILE.read_text()
    assert ht.main(["readme"]) == 0


def test_readme_values_table_is_current() -> None:
    readme = ht.README_FILE.read_text()
    assert ht.readme_with_table(readme, ht.values_table()) == readme, (
        "regenerate: python -m riskserve.devtools.helm readme --write"
    )


# --------------------------------------------------------------------------- k8s/ setup


def _versions_env() -> dict[str, str]:
    text = (ht.REPO_ROOT / "k8s" / "versions.env").read_text()
    return dict(re.findall(r'^([A-Z_]+)="([^"]*)"$', text, re.M))


def test_k8s_versions_are_pinned_and_consistent() -> None:
    pins = _versions_env()
    assert pins["HELM_VERSION"] == ht.HELM_VERSION
    assert re.fullmatch(r"v\d+\.\d+\.\d+", pins["KIND_VERSION"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["KPS_CHART_VERSION"])
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", pins["KIND_NODE_IMAGE"])
    kind_config = yaml.safe_load((ht.REPO_ROOT / "k8s" / "kind-config.yaml").read_text())
    assert kind_config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert {node["image"] for node in kind_config["nodes"]} == {pins["KIND_NODE_IMAGE"]}
    node_minor = re.search(r"v1\.(\d+)\.", pins["KIND_NODE_IMAGE"])
    assert node_minor and f"1.{node_minor[1]}" in ht.K8S_VERSIONS


def test_kube_prometheus_stack_selects_what_the_chart_labels() -> None:
    kps = yaml.safe_load((ht.REPO_ROOT / "k8s" / "kube-prometheus-stack-values.yaml").read_text())
    spec = kps["prometheus"]["prometheusSpec"]
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is True
    assert spec["ruleSelectorNilUsesHelmValues"] is True
    sidecar = kps["grafana"]["sidecar"]["dashboards"]
    objects = rendered("k8s/riskserve-values.yaml")
    lib = (ht.REPO_ROOT / "k8s" / "lib.sh").read_text()
    release = re.search(r'^KPS_RELEASE="([^"]+)"$', lib, re.M)
    assert release
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert ht.one(objects, kind)["metadata"]["labels"]["release"] == release[1]
    dashboards = [
        cm
        for cm in ht.by_kind(objects, "ConfigMap")
        if sidecar["label"] in cm["metadata"]["labels"]
    ]
    assert dashboards
    assert {cm["metadata"]["labels"][sidecar["label"]] for cm in dashboards} == {
        sidecar["labelValue"]
    }
    assert sidecar["searchNamespace"] == "ALL"


@pytest.mark.parametrize(
    "script", sorted((ht.REPO_ROOT / "k8s").glob("*.sh")), ids=lambda p: p.name
)
def test_k8s_scripts_are_strict_bash(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    if script.name not in ("lib.sh", "log.sh"):  # sourced libraries
        assert "set -euo pipefail" in text
        assert os.access(script, os.X_OK)
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


STUB_TOOL = r"""#!/usr/bin/env bash
# Stand-in for kind/kubectl/helm/docker/bentoml: logs the call and fakes just enough state.
set -euo pipefail
tool="$(basename "$0")"
state="${STUB_STATE:?}"
printf '%s %s\n' "${tool}" "$*" >>"${state}/calls.log"
args=" $* "
case "${tool}:${args}" in
  kind:*" version "*) echo "kind v0.29.0 go1.24.2 linux/amd64" ;;
  kind:*" get clusters "*) if [[ -f "${state}/cluster" ]]; then echo riskserve; fi ;;
  kind:*" create cluster "*) touch "${state}/cluster" ;;
  kind:*" delete cluster "*) rm -f "${state}/cluster" ;;
  kubectl:*" version "*) echo "Client Version: v1.33.1" ;;
  kubectl:*" get namespace "*) [[ -f "${state}/namespace" ]] ;;
  kubectl:*" create namespace "*) touch "${state}/namespace" ;;
  kubectl:*" get secret "*) [[ -f "${state}/secret" ]] ;;
  kubectl:*" create secret "*)
    file="${args##*--from-file=api-keys=}"
    cp "${file%% *}" "${state}/secret" ;;
  helm:*" version "*) echo "v3.18.0+gcc58e3f" ;;
  docker:*" image inspect "*) [[ -f "${state}/image" ]] ;;
  bentoml:*" build "*) echo "Building Bento"; echo "__tag__:riskserve:abc123" ;;
  bentoml:*" containerize "*) touch "${state}/image" ;;
  *) ;;
esac
"""


def test_up_and_down_are_idempotent_with_stub_tools(tmp_path: Path) -> None:
    """k8s/up.sh and down.sh run twice against stand-in tools: the second run reuses everything."""
    repo = tmp_path / "repo"
    shutil.copytree(ht.REPO_ROOT / "k8s", repo / "k8s")
    (repo / "bentofile.yaml").write_text("service: service:RiskServe\n")
    stubs, state = tmp_path / "bin", tmp_path / "state"
    stubs.mkdir()
    state.mkdir()
    (stubs / "stub").write_text(STUB_TOOL)
    (stubs / "stub").chmod(0o755)
    for tool in ("kind", "kubectl", "helm", "docker", "bentoml"):
        (stubs / tool).symlink_to(stubs / "stub")
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "STUB_STATE": str(state), "HOME": str(tmp_path)}

    def run(script: str, *args: str) -> str:
        proc = subprocess.run(
            ["bash", str(repo / "k8s" / script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        calls = (state / "calls.log").read_text()
        (state / "calls.log").unlink()
        return calls

    first = run("up.sh")
    pins = _versions_env()
    assert f"kind create cluster --name riskserve --config {repo}/k8s/kind-config.yaml" in first
    assert f"--image {pins['KIND_NODE_IMAGE']}" in first
    assert (
        "bentoml containerize riskserve:abc123 --backend docker --image-tag riskserve:abc123"
        in (first)
    )
    assert "kind load docker-image riskserve:abc123 --name riskserve" in first
    assert f"kube-prometheus-stack --version {pins['KPS_CHART_VERSION']}" in first
    assert "create secret generic riskserve-api-keys" in first
    assert "upgrade --install riskserve" in first and "--set image.tag=abc123" in first
    assert "helm --kube-context kind-riskserve test riskserve" in first
    key = (state / "secret").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key) and key not in first
    assert sorted(p.name for p in (repo / ".cache" / "k8s").glob("*.pid")) == [
        "port-forward-grafana.pid",
        "port-forward-prometheus.pid",
        "port-forward-riskserve.pid",
    ]

    second = run("up.sh", "--no-port-forward")
    for done_once in ("create cluster", "create secret", "containerize", "create namespace"):
        assert done_once not in second, done_once
    assert "upgrade --install riskserve" in second
    assert (state / "secret").read_text().strip() == key

    assert "kind delete cluster --name riskserve" in run("down.sh")
    assert not list((repo / ".cache" / "k8s").glob("*.pid"))
    assert "delete cluster" not in run("down.sh")


def test_k8s_scripts_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.fail("shellcheck not installed: run `make deps` (Debian package shellcheck)")
    scripts = sorted(str(p) for p in (ht.REPO_ROOT / "k8s").glob("*.sh"))
    proc = subprocess.run(
        [shellcheck, "-x", *scripts], capture_output=True, text=True, check=False, cwd=ht.REPO_ROOT
    )
    assert proc.returncode == 0, proc.stdout


# --------------------------------------------------------------------------- checks catch breakage


def test_wrong_value_type_is_rejected_by_the_schema() -> None:
    with pytest.raises(ht.HelmError, match=r"replicaCount: Invalid type"):
        ht.template(set_strings=["replicaCount=two"])
    proc = ht.lint(sets=["config.logLevel=LOUD"])
    assert proc.returncode != 0 and "logLevel" in proc.stdout
    with pytest.raises(ht.HelmError, match=r"auth\.apiKeys\.0"):
        ht.template(sets=["auth.apiKeys={too-short}"])


@pytest.mark.parametrize(
    "misspelled",
    ["replicaCont=2", "config.wokers=2", "serviceMonitor.enable=true", "auth.apiKey=x"],
)
def test_misspelled_value_key_is_rejected_by_the_schema(misspelled: str) -> None:
    key = misspelled.split("=")[0].split(".")[-1]
    with pytest.raises(ht.HelmError, match=rf"Additional property {key} is not allowed"):
        ht.template(sets=[misspelled])


def test_broken_template_fails_lint(tmp_path: Path) -> None:
    chart = ht.copy_chart(tmp_path)
    service = chart / "templates" / "service.yaml"
    service.write_text(
        service.read_text().replace("{{- with .Values.service.annotations }}", "", 1)
    )
    proc = ht.lint(chart=chart)
    assert proc.returncode != 0
    assert "service.yaml" in proc.stdout + proc.stderr
    assert ht.lint().returncode == 0, "the real chart must stay untouched"


def test_misspelled_manifest_field_fails_validation(tmp_path: Path) -> None:
    """helm lint cannot see a misspelled Kubernetes field; the strict schemas can."""
    chart = ht.copy_chart(tmp_path)
    deployment = chart / "templates" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("readinessProbe:", "readynessProbe:"))
    assert ht.lint(chart=chart).returncode == 0
    problems = ht.validate_all(ht.render(chart=chart), versions=ht.K8S_VERSIONS[:1])
    assert any("readynessProbe" in p for p in problems), problems


def test_unknown_kind_fails_validation() -> None:
    objects = [
        *rendered("defaults"),
        {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}},
    ]
    problems = ht.validate_all(objects, versions=ht.K8S_VERSIONS[:1])
    assert problems == ["Deploymnet/x: no Kubernetes 1.29 schema for apps/v1 Deploymnet"]


def test_broken_service_monitor_and_rule_are_caught() -> None:
    objects = ci("monitoring")
    services = ht.by_kind(objects, "Service")
    monitor = json.loads(json.dumps(ht.one(objects, "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["port"] = "metrics"
    assert any(
        "'metrics' is not a port name" in p for p in ht.check_service_monitor(monitor, services)
    )
    monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "other"
    assert any(
        "matches no rendered Service" in p for p in ht.check_service_monitor(monitor, services)
    )
    rule = json.loads(json.dumps(ht.one(objects, "PrometheusRule")))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert any("rule without expr" in p for p in ht.check_prometheus_rule(rule))
    del rule["spec"]
    assert ht.check_prometheus_rule(rule) == ["PrometheusRule/rs-riskserve: missing spec.groups"]


def test_rules_drift_is_detected(tmp_path: Path) -> None:
    chart = ht.copy_chart(tmp_path)
    rules_file = chart / "files" / "riskserve.rules.yaml"
    rules = yaml.safe_load(rules_file.read_text())
    rules["groups"][0]["rules"] = rules["groups"][0]["rules"][:-1] or [
        {"record": "drift:test", "expr": "vector(1)"}
    ]
    rules_file.write_text(yaml.safe_dump(rules))
    objects = ht.render(chart=chart, sets=["prometheusRule.enabled=true"])
    assert ht.rules_drift(objects, rules_file, source_file=None) == []
    assert ht.rules_drift(objects, ht.RULES_FILE, source_file=None) != []
    # The chart's copy edited by hand no longer matches the source promtool tests.
    assert any("is not a copy of" in p for p in ht.rules_drift(objects, rules_file))


def test_broken_rules_file_fails_the_render(tmp_path: Path) -> None:
    chart = ht.copy_chart(tmp_path)
    (chart / "files" / "riskserve.rules.yaml").write_text("groups: [unclosed\n")
    with pytest.raises(ht.HelmError, match=r"riskserve\.rules\.yaml"):
        ht.template(chart=chart, sets=["prometheusRule.enabled=true"])


def test_dashboard_drift_is_detected(tmp_path: Path) -> None:
    objects = ci("monitoring")
    grafana = tmp_path / "grafana-dashboards"
    shutil.copytree(ht.CHART_DASHBOARDS_DIR, grafana)
    assert ht.dashboards_drift(objects, grafana_dir=grafana) == []
    first = sorted(grafana.glob("*.json"))[0]
    dashboard = json.loads(first.read_text())
    dashboard["title"] = f"{dashboard.get('title', '')} (edited by hand)"
    first.write_text(json.dumps(dashboard))
    assert any(first.name in p for p in ht.dashboards_drift(objects, grafana_dir=grafana))
    first.unlink()
    assert any("!=" in p for p in ht.dashboards_drift(objects, grafana_dir=grafana))


def test_undocumented_values_key_is_detected(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("# -- Documented.\na: 1\nb:\n  # -- Documented child.\n  c: 2\n")
    assert ht.undocumented_keys(values) == ["b"]


def test_schema_description_drift_is_detected(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    text = ht.VALUES_FILE.read_text()
    assert "# -- Pods to run when" in text
    values.write_text(text.replace("# -- Pods to run when", "# -- Replicas to run when"))
    schema = json.loads(ht.SCHEMA_FILE.read_text())
    changed = ht.schema_with_descriptions(schema, values)
    assert changed != schema
    assert changed["properties"]["replicaCount"]["description"].startswith("Replicas to run")
