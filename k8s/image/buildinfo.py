"""Inputs of the podman image build (k8s/image/build.sh), computed in one place.

Subcommands, each run with the project venv's Python:

* ``index OUTDIR`` reads the package-index settings the host's pip uses (its config files and
  PIP_* variables, resolved by pip itself) and writes what a build container needs to reach the
  same index: ``pip.conf`` (for pip), ``uv.toml`` (for uv, which ignores pip's configuration;
  BentoML's Dockerfile installs with ``uv pip install``), ``ca.crt`` (the CA bundle pip trusts) and
  ``mirrors`` (local directories the settings point at, one per line, to be mounted read-only at
  the same path).
* ``bentofile --base-image REF --out PATH`` writes the podman bentofile: ``bentofile.yaml``
  unchanged except for ``docker``, which names the local base image instead of a distro.
* ``fingerprint --bentofile PATH --uv-config PATH`` prints a short digest of everything that goes
  into the Bento and its image; build.sh uses it as the Bento version and image tag, so an
  unchanged tree reuses the image it already built.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BENTOFILE = REPO_ROOT / "bentofile.yaml"
# Where build.sh mounts the `index` output directory inside the base-image build.
BUILD_MOUNT = "/run/riskserve-build"


@dataclass
class IndexSettings:
    """The package-index settings pip resolves from its configuration files and environment."""

    index_url: str = "https://pypi.org/simple"
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    no_index: bool = False
    cert: str | None = None
    trusted_hosts: list[str] = field(default_factory=list)
    constraint_files: list[str] = field(default_factory=list)


def host_index_settings() -> IndexSettings:
    """What `pip install` would use here, read through pip's own option parser.

    That covers every place pip reads settings from (/etc/pip.conf, /etc/xdg/pip/pip.conf,
    ~/.config/pip/pip.conf, ~/.pip/pip.conf, PIP_CONFIG_FILE, PIP_* variables) with pip's
    precedence, instead of re-implementing it.
    """
    from pip._internal.commands import create_command

    options, _ = create_command("install").parse_args([])
    cert = options.cert or os.environ.get("SSL_CERT_FILE") or _system_ca_bundle()
    return IndexSettings(
        index_url=options.index_url,
        extra_index_urls=list(options.extra_index_urls or []),
        find_links=list(options.find_links or []),
        no_index=bool(options.no_index),
        cert=cert,
        trusted_hosts=list(options.trusted_hosts or []),
        constraint_files=list(options.constraints or []),
    )


def _system_ca_bundle() -> str | None:
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if Path(candidate).is_file():
            return candidate
    return None


def local_path(location: str) -> Path | None:
    """The local filesystem path of a file:// URL or plain path; None for a remote URL."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if not parsed.scheme and location.startswith("/"):
        return Path(location)
    return None


def mirror_mounts(settings: IndexSettings) -> list[Path]:
    """Local directories the settings reference, to mount read-only at the same path.

    A PEP 503 index at `<root>/simple` usually links its files as `../../files/...`, so the
    parent of a `simple` directory is mounted; find-links directories are mounted as they are.
    """
    roots: list[Path] = []
    for url in [settings.index_url, *settings.extra_index_urls]:
        path = local_path(url)
        if path is not None:
            roots.append(path.parent if path.name == "simple" else path)
    for link in settings.find_links:
        path = local_path(link)
        if path is not None:
            roots.append(path if path.is_dir() else path.parent)
    unique: list[Path] = []
    for root in roots:
        if root.exists() and root not in unique and not any(root.is_relative_to(u) for u in unique):
            unique.append(root)
    return unique


def constraint_lines(files: Iterable[str]) -> list[str]:
    """Requirement lines of pip constraint files (comments and blank lines dropped)."""
    lines: list[str] = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            continue
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                lines.append(line)
    return lines


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def uv_toml(settings: IndexSettings, has_ca: bool) -> str:
    """uv's equivalent of the host pip settings (uv reads no pip configuration).

    `unsafe-best-match` is pip's behaviour (best version across all indexes; uv's default stops at
    the first index that has the package). Python is never downloaded: the base image's
    Debian Python 3.11 is the interpreter, and a build that cannot find it should fail.
    """
    lines = [
        "# Generated by k8s/image/buildinfo.py from the host's pip settings; do not edit.",
        f"index-url = {json.dumps(settings.index_url)}",
        'index-strategy = "unsafe-best-match"',
        'python-downloads = "never"',
        'python-preference = "only-system"',
        # The uv cache is a mount on another filesystem: copy instead of trying hardlinks.
        'link-mode = "copy"',
    ]
    if settings.extra_index_urls:
        lines.append(f"extra-index-url = {_toml_list(settings.extra_index_urls)}")
    if settings.find_links:
        lines.append(f"find-links = {_toml_list(settings.find_links)}")
    if settings.no_index:
        lines.append("no-index = true")
    if settings.trusted_hosts:
        lines.append(f"allow-insecure-host = {_toml_list(settings.trusted_hosts)}")
    if has_ca:
        # The CA bundle is mounted as the container's system store (ca-certificates.crt).
        lines.append("system-certs = true")
    constraints = constraint_lines(settings.constraint_files)
    if constraints:
        lines.append(f"constraint-dependencies = {_toml_list(constraints)}")
    return "\n".join(lines) + "\n"


def pip_conf(settings: IndexSettings, has_ca: bool, has_constraints: bool) -> str:
    """pip.conf for the base-image build, with paths as mounted under BUILD_MOUNT."""
    lines = ["# Generated by k8s/image/buildinfo.py from the host's pip settings; do not edit.",
             "[global]", f"index-url = {settings.index_url}"]
    if settings.extra_index_urls:
        lines.append("extra-index-url = " + " ".join(settings.extra_index_urls))
    if settings.find_links:
        lines.append("find-links = " + " ".join(settings.find_links))
    if settings.no_index:
        lines.append("no-index = true")
    if settings.trusted_hosts:
        lines.append("trusted-host = " + " ".join(settings.trusted_hosts))
    if has_ca:
        lines.append(f"cert = {BUILD_MOUNT}/ca.crt")
    if has_constraints:
        lines.append(f"constraint = {BUILD_MOUNT}/constraints.txt")
    return "\n".join(lines) + "\n"


def write_index(outdir: Path, settings: IndexSettings) -> list[Path]:
    """Write pip.conf, uv.toml, ca.crt, constraints.txt and mirrors into `outdir`."""
    outdir.mkdir(parents=True, exist_ok=True)
    has_ca = settings.cert is not None and Path(settings.cert).is_file()
    ca_file = outdir / "ca.crt"
    if has_ca:
        shutil.copyfile(settings.cert, ca_file)  # type: ignore[arg-type]
    else:
        ca_file.unlink(missing_ok=True)
    constraints = constraint_lines(settings.constraint_files)
    constraints_file = outdir / "constraints.txt"
    if constraints:
        constraints_file.write_text("\n".join(constraints) + "\n")
    else:
        constraints_file.unlink(missing_ok=True)
    (outdir / "uv.toml").write_text(uv_toml(settings, has_ca))
    (outdir / "pip.conf").write_text(pip_conf(settings, has_ca, bool(constraints)))
    mirrors = mirror_mounts(settings)
    (outdir / "mirrors").write_text("".join(f"{m}\n" for m in mirrors))
    return mirrors


def podman_bentofile(base_image: str, source: Path = DEFAULT_BENTOFILE) -> dict[str, object]:
    """bentofile.yaml with `docker` replaced by the local base image (and its Python version).

    `docker.distro` is dropped (BentoML ignores it next to base_image); `python_version` is kept
    because BentoML 1.4 still passes it to `uv venv --python` inside the image.
    """
    import yaml

    config = yaml.safe_load(source.read_text())
    docker = dict(config.get("docker") or {})
    replaced: dict[str, object] = {"base_image": base_image}
    if "python_version" in docker:
        replaced["python_version"] = docker["python_version"]
    config["docker"] = replaced
    return config


def write_bentofile(base_image: str, out: Path) -> None:
    """Write the podman bentofile (generated, so it can never drift from bentofile.yaml)."""
    import yaml

    header = ("# Generated by k8s/image/buildinfo.py from bentofile.yaml for the podman build;"
              " do not edit.\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(podman_bentofile(base_image), sort_keys=False))


def included_files(config: dict[str, Any], root: Path = REPO_ROOT) -> list[Path]:
    """Files the bentofile's include/exclude patterns select (what `bentoml build` packs),
    matched with gitignore-style patterns as BentoML does."""
    import pathspec

    exclude = pathspec.PathSpec.from_lines("gitwildmatch", config.get("exclude") or [])
    found: set[Path] = set()
    for pattern in config.get("include") or []:
        found.update(p for p in root.glob(str(pattern)) if p.is_file())
    return sorted(p for p in found if not exclude.match_file(str(p.relative_to(root))))


def production_tags() -> list[str]:
    """`name:version` of the production version of every model (what the Bento packs)."""
    from riskserve.core import store
    from riskserve.core.specs import MODEL_NAMES
    from riskserve.errors import ConfigurationError

    try:
        return [f"{name}:{store.production_version(name)}" for name in MODEL_NAMES]
    except ConfigurationError as exc:
        raise SystemExit(f"buildinfo: {exc.message}") from None


def fingerprint(bentofile: Path, uv_config: Path, root: Path = REPO_ROOT) -> str:
    """Digest of the Bento's inputs: bentofile, packed sources, requirements, index settings,
    BentoML version and the production model versions."""
    from importlib.metadata import version

    import yaml

    config = yaml.safe_load(bentofile.read_text())
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    add("bentofile", bentofile.read_bytes())
    add("uv.toml", uv_config.read_bytes() if uv_config.is_file() else b"")
    add("bentoml", version("bentoml").encode())
    requirements = (config.get("python") or {}).get("requirements_txt")
    if requirements:
        add("requirements", (root / requirements).read_bytes())
    for path in included_files(config, root):
        add(f"src:{path.relative_to(root)}", path.read_bytes())
    add("models", "\n".join(production_tags()).encode())
    return digest.hexdigest()[:16]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    index = sub.add_parser("index", help="write pip.conf, uv.toml, ca.crt and mirrors")
    index.add_argument("outdir", type=Path)
    bento = sub.add_parser("bentofile", help="write the podman bentofile")
    bento.add_argument("--base-image", required=True)
    bento.add_argument("--out", type=Path, required=True)
    finger = sub.add_parser("fingerprint", help="print the digest of the Bento's inputs")
    finger.add_argument("--bentofile", type=Path, required=True)
    finger.add_argument("--uv-config", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "index":
        settings = host_index_settings()
        mirrors = write_index(args.outdir, settings)
        print(f"index-url {settings.index_url}; extra {settings.extra_index_urls or 'none'}; "
              f"find-links {settings.find_links or 'none'}; CA {settings.cert or 'none'}; "
              f"mirrors {[str(m) for m in mirrors] or 'none'}", file=sys.stderr)
    elif args.command == "bentofile":
        write_bentofile(args.base_image, args.out)
    else:
        print(fingerprint(args.bentofile, args.uv_config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
