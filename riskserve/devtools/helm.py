"""Offline checks of the riskserve Helm chart: pinned helm, rendering, schema and drift checks.

Used by tests/test_helm.py and k8s/image; also a small CLI
(`python -m riskserve.devtools.helm --help`) for the README values table and for checking the
chart by hand.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "riskserve"
CI_DIR = CHART_DIR / "ci"
VALUES_FILE = CHART_DIR / "values.yaml"
SCHEMA_FILE = CHART_DIR / "values.schema.json"
README_FILE = CHART_DIR / "README.md"
RULES_FILE = CHART_DIR / "files" / "riskserve.rules.yaml"
# The rules file promtool's unit tests load; the chart's copy must be byte-identical to it.
SOURCE_RULES_FILE = REPO_ROOT / "grafana" / "rules" / "riskserve.rules.yaml"
CHART_DASHBOARDS_DIR = CHART_DIR / "files" / "dashboards"
GRAFANA_DASHBOARDS_DIR = REPO_ROOT / "grafana" / "dashboards"
FETCH_HELM = REPO_ROOT / "k8s" / "fetch-helm.sh"
K8S_VALUES_FILE = REPO_ROOT / "k8s" / "riskserve-values.yaml"

HELM_VERSION = "v3.18.0"
# Path to a helm binary to use instead of the fetched one (machines that are not linux/amd64).
HELM_ENV = "RISKSERVE_HELM"
# Kubernetes minor versions every rendered object is validated against (offline schemas).
K8S_VERSIONS: tuple[str, ...] = ("1.29", "1.30", "1.31", "1.32", "1.33")
# Custom resources without an upstream schema here: checked structurally instead.
MONITORING_GROUP = "monitoring.coreos.com"
MONITORING_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})

RELEASE = "rs"
NAMESPACE = "riskserve"

VALUES_TABLE_START = "<!-- values-table:start -->"
VALUES_TABLE_END = "<!-- values-table:end -->"

Manifest = dict[str, Any]


class HelmError(RuntimeError):
    """A helm command failed; the message carries its stderr."""


# --------------------------------------------------------------------------- helm


@functools.lru_cache(maxsize=1)
def helm_binary() -> Path:
    """The pinned helm: $RISKSERVE_HELM if set, else fetched and checked by k8s/fetch-helm.sh."""
    override = os.environ.get(HELM_ENV)
    if override:
        return Path(override)
    proc = subprocess.run(
        ["bash", str(FETCH_HELM)], capture_output=True, text=True, check=False, timeout=600
    )
    if proc.returncode != 0:
        raise HelmError(f"k8s/fetch-helm.sh failed:\n{proc.stderr}")
    return Path(proc.stdout.strip().splitlines()[-1])


def run_helm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run helm with a clean, repo-local home so user config and plugins never leak in."""
    home = REPO_ROOT / ".cache" / "helm-home"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        # No cluster is reachable: point helm at an empty kubeconfig.
        "KUBECONFIG": str(home / "kubeconfig-none"),
    }
    return subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
    )


def lint(
    chart: Path = CHART_DIR, values_files: Sequence[Path] = (), sets: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`helm lint --strict` on the chart with the given values."""
    args = ["lint", "--strict", str(chart)]
    for values_file in values_files:
        args += ["-f", str(values_file)]
    for item in sets:
        args += ["--set", item]
    return run_helm(*args)


def template(
    chart: Path = CHART_DIR,
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    set_strings: Sequence[str] = (),
    kube_version: str = K8S_VERSIONS[0],
) -> str:
    """`helm template` output (raises HelmError on failure)."""
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    args += [
        "--kube-version",
        f"{kube_version}.0" if kube_version.count(".") == 1 else kube_version,
    ]
    for values_file in values_files:
        args += ["-f", str(values_file)]
    for item in sets:
        args += ["--set", item]
    for item in set_strings:
        args += ["--set-string", item]
    proc = run_helm(*args)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip())
    return proc.stdout


def render(
    chart: Path = CHART_DIR,
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    kube_version: str = K8S_VERSIONS[0],
) -> list[Manifest]:
    """Rendered objects (hooks included), in helm's order."""
    text = template(chart, values_files, sets, kube_version=kube_version)
    return [doc for doc in yaml.safe_load_all(text) if doc]


_NOTES_PROBE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-probe
data:
  notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | toJson }}
"""


def render_notes(workdir: Path, values_files: Sequence[Path] = (), sets: Sequence[str] = ()) -> str:
    """NOTES.txt as `helm install` would print it, rendered offline through a chart copy."""
    chart = copy_chart(workdir)
    (chart / "templates" / "zz-notes-probe.yaml").write_text(_NOTES_PROBE)
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    args += ["--show-only", "templates/zz-notes-probe.yaml"]
    for values_file in values_files:
        args += ["-f", str(values_file)]
    for item in sets:
        args += ["--set", item]
    proc = run_helm(*args)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip())
    return yaml.safe_load(proc.stdout)["data"]["notes"]


def ci_values_files() -> list[Path]:
    """Every ci/*-values.yaml of the chart, sorted."""
    return sorted(CI_DIR.glob("*-values.yaml"))


def copy_chart(dest: Path) -> Path:
    """A throw-away copy of the chart (tests break the copy, never the real chart)."""
    target = dest / CHART_DIR.name
    shutil.copytree(CHART_DIR, target)
    return target


# --------------------------------------------------------------------------- selection


def kinds(objects: Iterable[Manifest]) -> list[str]:
    """The kinds of the objects, sorted."""
    return sorted(obj["kind"] for obj in objects)


def by_kind(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    """The objects of one kind."""
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: Iterable[Manifest], kind: str) -> Manifest:
    """The single object of a kind (AssertionError when there are none or several)."""
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def is_test_hook(obj: Manifest) -> bool:
    """Whether the object is a `helm test` hook."""
    hooks = obj.get("metadata", {}).get("annotations", {}).get("helm.sh/hook", "")
    return "test" in hooks.split(",")


def server_container(objects: Iterable[Manifest]) -> Manifest:
    """The riskserve container of the Deployment."""
    deployment = one(objects, "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]


def server_config(objects: Iterable[Manifest]) -> dict[str, str]:
    """Data of the ConfigMap the server container reads with envFrom (not the dashboards')."""
    objects = list(objects)
    name = server_container(objects)["envFrom"][0]["configMapRef"]["name"]
    (configmap,) = [cm for cm in by_kind(objects, "ConfigMap") if cm["metadata"]["name"] == name]
    return dict(configmap["data"])


def container_env(container: Manifest) -> dict[str, str]:
    """Literal env values of a container (valueFrom entries are left out)."""
    return {env["name"]: env["value"] for env in container.get("env", []) if "value" in env}


# --------------------------------------------------------------------------- Kubernetes schemas


@functools.cache
def _schema_dir(version: str) -> Any:
    """The strict (additionalProperties: false) schema directory of kubernetes-validate."""
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    folder = root.joinpath(f"v{version}.0-local-strict")
    if not folder.is_dir():
        raise ValueError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    return folder


@functools.cache
def _registry(version: str) -> referencing.Registry:
    definitions = json.loads(_schema_dir(version).joinpath("_definitions.json").read_text())
    return referencing.Registry().with_resource(
        definitions["$id"], referencing.Resource.from_contents(definitions)
    )


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Validator | None:
    # Same file naming as kubernetes_validate.utils.validate: <kind>-<group prefix>-<version>.json
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(version).joinpath(f"{kind.lower()}-{group_version}.json")
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_registry(version))


def validate_k8s(obj: Manifest, version: str) -> list[str]:
    """Problems of one object against Kubernetes' strict schema of `version` (unknown kind: one)."""
    kind, api_version = obj.get("kind", "?"), obj.get("apiVersion", "?")
    name = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
    validator = _validator(version, kind, api_version)
    if validator is None:
        return [f"{name}: no Kubernetes {version} schema for {api_version} {kind}"]
    return [
        f"{name} (k8s {version}) at {'/'.join(map(str, err.absolute_path)) or '<root>'}: "
        f"{err.message}"
        for err in validator.iter_errors(obj)
    ]


def is_monitoring(obj: Manifest) -> bool:
    """Whether the object is a Prometheus Operator resource this module checks structurally."""
    group = str(obj.get("apiVersion", "")).split("/")[0]
    return group == MONITORING_GROUP and obj.get("kind") in MONITORING_KINDS


def validate_all(objects: Iterable[Manifest], versions: Sequence[str] = K8S_VERSIONS) -> list[str]:
    """Problems of every object: Kubernetes schemas for core kinds, structure for monitoring."""
    objects = list(objects)
    problems: list[str] = []
    for obj in objects:
        if is_monitoring(obj):
            continue
        for version in versions:
            problems += validate_k8s(obj, version)
    problems += check_monitoring(objects)
    return problems


# --------------------------------------------------------------------------- monitoring CRDs


def _labels(obj: Manifest) -> dict[str, str]:
    return obj.get("metadata", {}).get("labels", {}) or {}


def _require(obj: Manifest, path: str, problems: list[str], label: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node or node[part] in (None, "", [], {}):
            problems.append(f"{label}: missing {path}")
            return None
        node = node[part]
    return node


def check_service_monitor(monitor: Manifest, services: Sequence[Manifest]) -> list[str]:
    """Structure of a ServiceMonitor and that it really selects a rendered Service's named port."""
    label = f"ServiceMonitor/{monitor.get('metadata', {}).get('name', '?')}"
    problems: list[str] = []
    if monitor.get("apiVersion") != f"{MONITORING_GROUP}/v1":
        problems.append(f"{label}: apiVersion must be {MONITORING_GROUP}/v1")
    _require(monitor, "metadata.name", problems, label)
    selector = _require(monitor, "spec.selector.matchLabels", problems, label)
    endpoints = _require(monitor, "spec.endpoints", problems, label)
    if selector is None or endpoints is None:
        return problems
    namespaces = monitor["spec"].get("namespaceSelector", {}).get("matchNames")
    matched = [
        svc
        for svc in services
        if all(_labels(svc).get(k) == v for k, v in selector.items())
        and (namespaces is None or svc["metadata"].get("namespace") in namespaces)
    ]
    if not matched:
        problems.append(f"{label}: selector {selector} matches no rendered Service")
    for endpoint in endpoints:
        port = endpoint.get("port")
        if not port:
            problems.append(f"{label}: endpoint without a named port: {endpoint}")
            continue
        for svc in matched:
            names = {p.get("name") for p in svc["spec"].get("ports", [])}
            if port not in names:
                problems.append(
                    f"{label}: port {port!r} is not a port name of Service/"
                    f"{svc['metadata']['name']} ({sorted(n for n in names if n)})"
                )
        path = endpoint.get("path", "/metrics")
        if not str(path).startswith("/"):
            problems.append(f"{label}: endpoint path {path!r} must start with /")
    return problems


def check_prometheus_rule(rule: Manifest) -> list[str]:
    """Structure of a PrometheusRule: named groups of rules with expr and record xor alert."""
    label = f"PrometheusRule/{rule.get('metadata', {}).get('name', '?')}"
    problems: list[str] = []
    if rule.get("apiVersion") != f"{MONITORING_GROUP}/v1":
        problems.append(f"{label}: apiVersion must be {MONITORING_GROUP}/v1")
    _require(rule, "metadata.name", problems, label)
    groups = _require(rule, "spec.groups", problems, label)
    for group in groups or []:
        if not group.get("name"):
            problems.append(f"{label}: a group has no name")
        if not group.get("rules"):
            problems.append(f"{label}: group {group.get('name')!r} has no rules")
        for item in group.get("rules") or []:
            if "expr" not in item:
                problems.append(f"{label}: rule without expr in group {group.get('name')!r}")
            if ("record" in item) == ("alert" in item):
                problems.append(f"{label}: rule must have exactly one of record/alert: {item}")
    return problems


def check_monitoring(objects: Sequence[Manifest]) -> list[str]:
    """Structural problems of every ServiceMonitor and PrometheusRule among the objects."""
    services = by_kind(objects, "Service")
    problems: list[str] = []
    for monitor in by_kind(objects, "ServiceMonitor"):
        problems += check_service_monitor(monitor, services)
    for rule in by_kind(objects, "PrometheusRule"):
        problems += check_prometheus_rule(rule)
    return problems


# --------------------------------------------------------------------------- drift


def rules_drift(
    objects: Sequence[Manifest],
    rules_file: Path = RULES_FILE,
    source_file: Path | None = SOURCE_RULES_FILE,
) -> list[str]:
    """Differences between the rendered PrometheusRule spec, the chart's rules file and its source.

    The spec must equal the YAML of the chart's rules file, and that file must be a byte-identical
    copy of the source that `promtool test rules` runs against (skipped when source_file is None).
    """
    rules = by_kind(objects, "PrometheusRule")
    if len(rules) != 1:
        return [f"expected one PrometheusRule, rendered {len(rules)}"]
    problems = []
    if rules[0].get("spec") != yaml.safe_load(rules_file.read_text()):
        problems.append(f"PrometheusRule spec differs from {rules_file}")
    if source_file is not None:
        if not source_file.is_file():
            problems.append(f"rules source {source_file} is missing")
        elif source_file.read_bytes() != rules_file.read_bytes():
            problems.append(f"{rules_file} is not a copy of {source_file}")
    return problems


def dashboards_drift(
    objects: Sequence[Manifest],
    chart_dir: Path = CHART_DASHBOARDS_DIR,
    grafana_dir: Path = GRAFANA_DASHBOARDS_DIR,
) -> list[str]:
    """Differences between the dashboard ConfigMaps and the JSON files in the chart and grafana/."""
    rendered: dict[str, str] = {}
    for cm in by_kind(objects, "ConfigMap"):
        if _labels(cm).get("app.kubernetes.io/component") == "dashboards":
            rendered.update(cm.get("data", {}))
    chart_files = {p.name: p for p in sorted(chart_dir.glob("*.json"))}
    grafana_files = {p.name: p for p in sorted(grafana_dir.glob("*.json"))}
    problems: list[str] = []
    if not chart_files:
        problems.append(f"no dashboards in {chart_dir}")
    if set(rendered) != set(chart_files):
        problems.append(f"ConfigMap keys {sorted(rendered)} != chart files {sorted(chart_files)}")
    if set(chart_files) != set(grafana_files):
        problems.append(
            f"chart dashboards {sorted(chart_files)} != {grafana_dir} files {sorted(grafana_files)}"
        )
    for name, text in rendered.items():
        if name in chart_files and text != chart_files[name].read_text():
            problems.append(f"ConfigMap data {name} differs from {chart_files[name]}")
        if name in grafana_files:
            try:
                same = json.loads(text) == json.loads(grafana_files[name].read_text())
            except json.JSONDecodeError as exc:
                problems.append(f"{name}: not JSON ({exc})")
                continue
            if not same:
                problems.append(f"ConfigMap data {name} differs from {grafana_files[name]}")
    return problems


# --------------------------------------------------------------------------- values documentation


@dataclass(frozen=True)
class ValueDoc:
    """One key of values.yaml with its `# --` comment and default."""

    key: str
    description: str
    default: Any


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-]+):(?:\s|$)")


def _iter_keys(lines: Sequence[str]) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, dotted key, comment lines above it) for every mapping key of values.yaml."""
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        if not stripped:
            comments = []
            continue
        match = _KEY_LINE.match(line)
        if not match or stripped.startswith("-"):
            comments = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        yield number, ".".join(key for _, key in stack), comments
        comments = []


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def values_docs(values_file: Path = VALUES_FILE) -> list[ValueDoc]:
    """Every key of values.yaml with its `# --` description (empty when it has none)."""
    text = values_file.read_text()
    data = yaml.safe_load(text)
    docs = []
    for _, key, comments in _iter_keys(text.splitlines()):
        described = [c for c in comments if c.startswith("# --")]
        description = described[-1][len("# --") :].strip() if described else ""
        docs.append(ValueDoc(key, description, _lookup(data, key)))
    return docs


def undocumented_keys(values_file: Path = VALUES_FILE) -> list[str]:
    """Keys of values.yaml without a `# --` comment right above them."""
    return [doc.key for doc in values_docs(values_file) if not doc.description]


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}[
        type(value)
    ]


def values_table(values_file: Path = VALUES_FILE) -> str:
    """The README's markdown table of every values key."""
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for doc in values_docs(values_file):
        default = json.dumps(doc.default, sort_keys=False)
        if len(default) > 80:
            default = "see values.yaml"
        description = doc.description.replace("|", "\\|")
        rows.append(f"| `{doc.key}` | {_type_name(doc.default)} | `{default}` | {description} |")
    return "\n".join(rows)


def readme_with_table(readme: str, table: str) -> str:
    """The README text with the block between the values-table markers replaced by `table`."""
    start, end = readme.index(VALUES_TABLE_START), readme.index(VALUES_TABLE_END)
    return readme[: start + len(VALUES_TABLE_START)] + "\n" + table + "\n" + readme[end:]


def schema_gaps(values: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys of `values` the JSON schema does not declare (under objects that list properties)."""
    if not isinstance(values, dict) or "properties" not in schema:
        return []
    gaps = []
    for key, value in values.items():
        dotted = f"{path}.{key}" if path else key
        if key not in schema["properties"]:
            gaps.append(dotted)
        else:
            gaps += schema_gaps(value, schema["properties"][key], dotted)
    return gaps


def _schema_node(schema: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    """The schema of one values key, found through nested `properties` (None when undeclared)."""
    node: Any = schema
    for part in dotted.split("."):
        node = node.get("properties", {}).get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


def schema_with_descriptions(
    schema: dict[str, Any], values_file: Path = VALUES_FILE
) -> dict[str, Any]:
    """The schema with every declared key's `description` taken from its values.yaml comment.

    values.yaml is where each key is documented; the schema (shown by editors and `helm lint`
    users) and the README table are generated from it, so the three never say different things.
    """
    result = json.loads(json.dumps(schema))
    for doc in values_docs(values_file):
        node = _schema_node(result, doc.key)
        if node is not None:
            node["description"] = doc.description
    return result


def schema_text(schema: dict[str, Any]) -> str:
    """The JSON text values.schema.json is written in (2-space indent, final newline)."""
    return json.dumps(schema, indent=2) + "\n"


# --------------------------------------------------------------------------- settings mapping


def config_env_name(key: str) -> str:
    """The environment variable a `config` key becomes: RISKSERVE_ + UPPER_SNAKE_CASE of it.

    Mirrors `snakecase | upper` in templates/_helpers.tpl (riskserve.env) for the camelCase keys
    values.yaml uses; tests compare the two so the mapping is written down once per language.
    """
    return "RISKSERVE_" + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).upper()


# --------------------------------------------------------------------------- CLI


def _check(values_files: Sequence[Path]) -> int:
    objects = render(values_files=values_files)
    problems = validate_all(objects)
    for problem in problems:
        print(problem)
    print(f"{len(objects)} objects, {len(problems)} problems")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `helm` prints the helm path; `readme [--write]` checks or rewrites generated docs."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("helm", help="fetch (once) and print the path of the pinned helm binary")
    readme = sub.add_parser(
        "readme",
        help="check the README values table and the schema's descriptions (from values.yaml)",
    )
    readme.add_argument(
        "--write", action="store_true", help="rewrite the table and the descriptions in place"
    )
    check = sub.add_parser("check", help="render with values files and validate offline")
    check.add_argument(
        "values", nargs="*", type=Path, help="values files (default: chart defaults)"
    )
    args = parser.parse_args(argv)
    if args.command == "helm":
        print(helm_binary())
        return 0
    if args.command == "check":
        return _check(args.values)
    generated = {
        README_FILE: readme_with_table(README_FILE.read_text(), values_table()),
        SCHEMA_FILE: schema_text(schema_with_descriptions(json.loads(SCHEMA_FILE.read_text()))),
    }
    stale = [path for path, text in generated.items() if path.read_text() != text]
    if args.write:
        for path in stale:
            path.write_text(generated[path])
        return 0
    for path in stale:
        print(f"{path.name} is stale: python -m riskserve.devtools.helm readme --write")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
