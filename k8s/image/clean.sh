#!/usr/bin/env bash
# Remove what k8s/image/build.sh and kubeplay.py made in podman: the kube-play release, the
# images localhost/riskserve:*, riskserve-base:* and riskserve-rootfs:*, and dangling build layers.
#   --bentos  also delete the Bentos those images were built from (BentoML store)
#   --caches  also delete .cache/image (.deb cache, uv cache, generated files): the next
#             `make image` is then fully cold
# Models in the store are never touched. Safe to run again.
#
# Usage: k8s/image/clean.sh [--bentos] [--caches] [--help]
set -euo pipefail

# shellcheck source=k8s/image/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

BENTOS=0
CACHES=0
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
while (($#)); do
  case "$1" in
    --bentos) BENTOS=1 ;;
    --caches) CACHES=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

need_root "k8s/image/clean.sh"
need podman "nothing to clean: podman is not installed"
use_runtime_conf

if [[ -x "${VENV_BIN}/python" ]]; then
  log "Tearing down the kube-play release"
  "${VENV_BIN}/python" "${IMAGE_DIR}/kubeplay.py" down >&2 || warn "kubeplay down failed"
fi

log "Removing riskserve images"
mapfile -t images < <(pm images --format '{{.Repository}}:{{.Tag}}' \
  | grep -E "^(localhost/${IMAGE_REPO}|${BASE_REPO}|${ROOTFS_REPO}):" || true)
bentos=()
for image in "${images[@]}"; do
  bento="$(pm image inspect --format '{{index .Config.Labels "riskserve.bento"}}' "${image}" 2>/dev/null || true)"
  if [[ -n "${bento}" && "${bento}" != "<no value>" ]]; then
    bentos+=("${bento}")
  fi
done
if ((${#images[@]})); then
  pm rmi -f "${images[@]}" >/dev/null && info "removed ${#images[@]} image tags"
else
  info "none"
fi
pm image prune -f >/dev/null && info "pruned dangling layers"

if ((BENTOS)) && ((${#bentos[@]})); then
  need_venv
  log "Deleting the Bentos of those images"
  for bento in $(printf '%s\n' "${bentos[@]}" | sort -u); do
    if "${VENV_BIN}/bentoml" delete -y "${bento}" >/dev/null 2>&1; then
      info "deleted ${bento}"
    fi
  done
fi

if ((CACHES)); then
  log "Deleting ${CACHE_DIR}"
  rm -rf --one-file-system "${CACHE_DIR}"
fi
