#!/usr/bin/env bash
# Build riskserve's container image with podman, without Docker or a registry:
#   1. base image: a Debian bookworm rootfs made by debootstrap, imported into podman, plus
#      Python 3.11 and uv (Containerfile.base); reused while its recipe is unchanged
#   2. train every model that has no version in the model store yet (full training, ~30 s)
#   3. `bentoml build` with a generated bentofile whose docker.base_image is that base image
#   4. `bentoml containerize --backend podman` with host networking, the host's package index
#      settings (pip config -> uv.toml, CA bundle, local mirrors, mounted read-only) and a
#      persistent uv cache
# The Bento version and the image tag are a digest of everything that goes into them, so an
# unchanged tree reuses the Bento and image it built before (seconds). Safe to run again.
# Prints the image reference on stdout; it is also written to .cache/image/image-ref.
#
# Usage: k8s/image/build.sh [--base-only] [--rebuild-base] [--no-cache] [--help]
#   --base-only     build (or reuse) the base image and stop
#   --rebuild-base  rebuild the rootfs and base image even if they exist (fresh Debian updates)
#   --no-cache      rebuild the Bento and every image layer (podman build --no-cache)
# Env: BENTOML_HOME (model store, default ~/bentoml), RISKSERVE_IMAGE_REPO (default riskserve),
#      RISKSERVE_DEBIAN_MIRROR, RISKSERVE_DEBIAN_SECURITY_MIRROR, RISKSERVE_IMAGE_CACHE
set -euo pipefail

# shellcheck source=k8s/image/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

BASE_ONLY=0
REBUILD_BASE=0
NO_CACHE=0
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
while (($#)); do
  case "$1" in
    --base-only) BASE_ONLY=1 ;;
    --rebuild-base) REBUILD_BASE=1 ;;
    --no-cache) NO_CACHE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

INDEX_DIR="${CACHE_DIR}/index"
DEB_CACHE="${CACHE_DIR}/debs"
UV_CACHE="${CACHE_DIR}/uv-cache"
EMPTY_CONTEXT="${CACHE_DIR}/empty-context"
BENTOFILE="${CACHE_DIR}/bentofile.podman.yaml"
TIMINGS_FILE="${CACHE_DIR}/last-build.txt"
TIMINGS=()

# timed LABEL COMMAND...: run a step and record how long it took.
timed() {
  local label="$1" start tenths
  shift
  start="$(date +%s%N)"
  "$@"
  tenths="$((($(date +%s%N) - start) / 100000000))"
  TIMINGS+=("$(printf '%-34s %5d.%d s' "${label}" "$((tenths / 10))" "$((tenths % 10))")")
}

check_prerequisites() {
  log "Checking prerequisites"
  need_root "k8s/image/build.sh"
  local tool
  for tool in podman buildah debootstrap runc; do
    need "${tool}" "run 'make image-deps' (apt-get installs podman, buildah, runc, debootstrap)"
  done
  need_venv
  mkdir -p "${CACHE_DIR}" "${DEB_CACHE}" "${UV_CACHE}" "${EMPTY_CONTEXT}"
  use_runtime_conf
}

# The host's package index settings, as files a build container can mount.
prepare_index() {
  log "Package index settings from the host's pip configuration"
  "${VENV_BIN}/python" "${IMAGE_DIR}/buildinfo.py" index "${INDEX_DIR}"
  mapfile -t MIRRORS <"${INDEX_DIR}/mirrors"
  # `bentoml build` pip-installs uv into the venv the first time it locks packages; do it now,
  # so that the base image gets the same uv version as the lock on the host.
  local version_of_uv='import importlib.metadata as m; print(m.version("uv"))'
  if ! UV_VERSION="$("${VENV_BIN}/python" -c "${version_of_uv}" 2>/dev/null)"; then
    info "installing uv into .venv (what bentoml build would do on its first lock)"
    "${VENV_BIN}/python" -m pip install --quiet uv \
      || die "could not pip install uv into .venv: is the package index reachable?"
    UV_VERSION="$("${VENV_BIN}/python" -c "${version_of_uv}")"
  fi
  info "uv ${UV_VERSION}"
}

# make_rootfs IMAGE: debootstrap a minimal bookworm, trim it and import it into podman.
make_rootfs() {
  local image="$1" work rootfs
  work="$(mktemp -d "${CACHE_DIR}/rootfs.XXXXXX")"
  rootfs="${work}/rootfs"
  # shellcheck disable=SC2064  # expand now: the trap must remove this run's directory
  trap "cleanup_rootfs '${work}'" EXIT
  info "debootstrap --variant=minbase ${DEBIAN_SUITE} from ${DEBIAN_MIRROR} (.deb cache: ${DEB_CACHE})"
  debootstrap --variant=minbase --cache-dir="${DEB_CACHE}" "${DEBIAN_SUITE}" "${rootfs}" \
    "${DEBIAN_MIRROR}" >"${work}/debootstrap.log" 2>&1 \
    || die "debootstrap failed (is ${DEBIAN_MIRROR} reachable?); last lines: $(tail -n 3 "${work}/debootstrap.log" | tr '\n' ' ')"
  # Debian's update channels (the apt and dpkg settings are in Containerfile.base).
  rm -f "${rootfs}/etc/apt/sources.list"
  cat >"${rootfs}/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${DEBIAN_MIRROR}
Suites: ${DEBIAN_SUITE} ${DEBIAN_SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR}
Suites: ${DEBIAN_SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Trim what minbase installed: docs (copyright files kept), man pages, translations, caches.
  find "${rootfs}/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  rm -rf "${rootfs}/usr/share/man/"* "${rootfs}/usr/share/info/"* "${rootfs}/usr/share/locale/"* \
    "${rootfs}/var/lib/apt/lists/"* "${rootfs}/var/cache/apt/"*.bin \
    "${rootfs}/var/cache/apt/archives/"*.deb "${rootfs}/var/log/"*.log
  info "importing the rootfs ($(du -sh "${rootfs}" | cut -f1)) as ${image}"
  tar --numeric-owner -C "${rootfs}" -c . \
    | pm import --change 'CMD ["/bin/bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "debootstrap --variant=minbase ${DEBIAN_SUITE} ${DEBIAN_MIRROR}" - "${image}" >/dev/null
  cleanup_rootfs "${work}"
  trap - EXIT
}

# debootstrap mounts /proc and /sys inside the target; unmount anything left before deleting.
cleanup_rootfs() {
  local work="$1" mnt
  [[ -d "${work}" ]] || return 0
  for mnt in proc sys dev/pts dev; do
    if mountpoint -q "${work}/rootfs/${mnt}" 2>/dev/null; then
      umount -l "${work}/rootfs/${mnt}" || true
    fi
  done
  rm -rf --one-file-system "${work}"
}

# A short digest of the base recipe: any change to it names a new base image.
recipe_key() {
  { printf '%s\n' "$@"; } | sha256sum | cut -c1-12
}

ensure_base() {
  local rootfs_key base_key
  rootfs_key="$(recipe_key "${DEBIAN_SUITE}" "${DEBIAN_MIRROR}" "${DEBIAN_SECURITY_MIRROR}" \
    "$(declare -f make_rootfs)")"
  ROOTFS_IMAGE="${ROOTFS_REPO}:${DEBIAN_SUITE}-${rootfs_key}"
  base_key="$(recipe_key "${ROOTFS_IMAGE}" "${UV_VERSION}" "$(cat "${IMAGE_DIR}/Containerfile.base")")"
  BASE_IMAGE="${BASE_REPO}:${DEBIAN_SUITE}-py3.11-${base_key}"

  log "Base image ${BASE_IMAGE}"
  if ((!REBUILD_BASE)) && image_exists "${BASE_IMAGE}"; then
    info "exists, reusing it (--rebuild-base for fresh Debian updates)"
    return
  fi
  if ((REBUILD_BASE)) || ! image_exists "${ROOTFS_IMAGE}"; then
    timed "rootfs (debootstrap + import)" make_rootfs "${ROOTFS_IMAGE}"
  else
    info "rootfs ${ROOTFS_IMAGE} exists, reusing it"
  fi
  local mounts=(-v "${INDEX_DIR}:/run/riskserve-build:ro" -v "${DEB_CACHE}:/var/cache/apt/archives")
  local mirror
  for mirror in "${MIRRORS[@]}"; do
    mounts+=(-v "${mirror}:${mirror}:ro")
  done
  local no_cache=()
  if ((REBUILD_BASE)); then
    no_cache=(--no-cache)
  fi
  info "podman build -f k8s/image/Containerfile.base (host network; apt .deb cache mounted)"
  timed "base image (apt + uv)" pm build --network host "${ULIMIT_FLAGS[@]}" --pull=never \
    "${no_cache[@]}" "${mounts[@]}" \
    --build-arg "ROOTFS=${ROOTFS_IMAGE}" --build-arg "UV_VERSION=${UV_VERSION}" \
    --label "org.opencontainers.image.title=riskserve-base" \
    -f "${IMAGE_DIR}/Containerfile.base" -t "${BASE_IMAGE}" "${EMPTY_CONTEXT}" \
    || die "base image build failed: see the podman output above (is ${DEBIAN_MIRROR} reachable?)"
}

train_missing() {
  log "Training models missing from the store (${BENTOML_HOME:-~/bentoml})"
  (cd "${REPO_ROOT}" && "${VENV_BIN}/python" -m training all --missing-only) \
    || die "training failed: run 'make train' and read its one-line error"
}

build_bento() {
  "${VENV_BIN}/python" "${IMAGE_DIR}/buildinfo.py" bentofile --base-image "${BASE_IMAGE}" \
    --out "${BENTOFILE}"
  VERSION="$(cd "${REPO_ROOT}" && "${VENV_BIN}/python" "${IMAGE_DIR}/buildinfo.py" \
    fingerprint --bentofile "${BENTOFILE}" --uv-config "${INDEX_DIR}/uv.toml")" \
    || die "could not fingerprint the build inputs (see the message above)"
  BENTO_TAG="riskserve:${VERSION}"
  log "Bento ${BENTO_TAG}"
  if ((!NO_CACHE)) && "${VENV_BIN}/bentoml" get "${BENTO_TAG}" >/dev/null 2>&1; then
    info "exists, reusing it (same sources, requirements, models and base image)"
    return
  fi
  if ((NO_CACHE)); then
    "${VENV_BIN}/bentoml" delete -y "${BENTO_TAG}" >/dev/null 2>&1 || true
  fi
  # The lock (`uv pip compile` inside bentoml build) uses the same index settings as the image.
  local out
  out="$(cd "${REPO_ROOT}" && UV_CONFIG_FILE="${INDEX_DIR}/uv.toml" "${VENV_BIN}/bentoml" build \
    -f "${BENTOFILE}" --version "${VERSION}" --output tag "${REPO_ROOT}")" \
    || die "bentoml build failed: run it by hand for details: .venv/bin/bentoml build -f ${BENTOFILE} --version ${VERSION}"
  [[ "${out}" == *"__tag__:${BENTO_TAG}"* ]] || die "bentoml build did not report ${BENTO_TAG}: ${out}"
}

containerize() {
  IMAGE="localhost/${IMAGE_REPO}:${VERSION}"
  log "Image ${IMAGE} (bentoml containerize --backend podman)"
  if ((!NO_CACHE)) && image_exists "${IMAGE}"; then
    info "exists, reusing it"
    return
  fi
  # Build-time mounts go through containers.conf because BentoML's podman backend joins several
  # --opt volume values into one argument. They are read-only except the uv cache, and a mount
  # is never committed to a layer.
  local volumes=("${INDEX_DIR}/uv.toml:/etc/uv/uv.toml:ro" "${UV_CACHE}:/root/.cache/uv:rw")
  if [[ -f "${INDEX_DIR}/ca.crt" ]]; then
    volumes+=("${INDEX_DIR}/ca.crt:/etc/ssl/certs/ca-certificates.crt:ro")
  fi
  local mirror
  for mirror in "${MIRRORS[@]}"; do
    volumes+=("${mirror}:${mirror}:ro")
  done
  write_containers_conf "${BUILD_CONF}" "${volumes[@]}"
  local opts=(--opt network=host --opt "ulimit=nofile=${NOFILE_LIMIT}:${NOFILE_LIMIT}"
    --opt "ulimit=nproc=${NPROC_LIMIT}:${NPROC_LIMIT}" --opt "label=riskserve.bento=${BENTO_TAG}"
    --opt "label=riskserve.base-image=${BASE_IMAGE}")
  if ((NO_CACHE)); then
    opts+=(--opt no-cache)
  fi
  (cd "${REPO_ROOT}" && CONTAINERS_CONF="${BUILD_CONF}" "${VENV_BIN}/bentoml" containerize \
    "${BENTO_TAG}" --backend podman --image-tag "${IMAGE}" "${opts[@]}") \
    || die "bentoml containerize failed: see the podman output above"
  image_exists "${IMAGE}" || die "bentoml containerize finished but ${IMAGE} is not in podman's storage"
}

summary() {
  pm tag "${IMAGE}" "localhost/${IMAGE_REPO}:latest"
  printf '%s\n' "${IMAGE}" >"${IMAGE_REF_FILE}"
  local size
  size="$(pm image inspect --format '{{.Size}}' "${IMAGE}")"
  TIMINGS+=("$(printf '%-34s %5d   s' "total" "${SECONDS}")")
  {
    printf 'image %s (also %s)\n' "${IMAGE}" "localhost/${IMAGE_REPO}:latest"
    printf 'size  %s MB (podman image inspect .Size, uncompressed)\n' "$((size / 1000000))"
    printf 'base  %s\n' "${BASE_IMAGE}"
    printf '%s\n' "${TIMINGS[@]}"
  } | tee "${TIMINGS_FILE}" >&2
  cat >&2 <<EOF

Run it (loopback only; k8s/image/podman.sh is podman with this machine's settings):
  k8s/image/podman.sh run --rm --network host -e RISKSERVE_API_KEYS=change-me \\
    -e RISKSERVE_GRPC_HOST=127.0.0.1 ${IMAGE} --host 127.0.0.1 --port 3000
Test it:   make test-container
EOF
  printf '%s\n' "${IMAGE}"
}

main() {
  SECONDS=0
  check_prerequisites
  prepare_index
  ensure_base
  if ((BASE_ONLY)); then
    if ((${#TIMINGS[@]})); then
      printf '%s\n' "${TIMINGS[@]}" >&2
    fi
    printf '%s\n' "${BASE_IMAGE}"
    return
  fi
  timed "train missing models" train_missing
  timed "bento (fingerprint, bentoml build)" build_bento
  timed "image (bentoml containerize)" containerize
  summary
}

main
