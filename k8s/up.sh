#!/usr/bin/env bash
# Bring riskserve up on a local Kubernetes cluster, end to end:
#   1. create the cluster (kind by default, or minikube) unless it exists
#   2. build the Bento (bentoml build) and its image (bentoml containerize)
#   3. load the image into the cluster
#   4. install kube-prometheus-stack (pinned) with the dashboard sidecar and ServiceMonitor selection
#   5. create the API-key Secret with a generated key (kept across runs) and install helm/riskserve
#   6. run `helm test`, then port-forward riskserve, Grafana and Prometheus to 127.0.0.1
# Safe to run again: every step checks what is already there. Versions: k8s/versions.env.
#
# Usage: k8s/up.sh [--skip-build] [--no-port-forward] [--help]
# Env:   RISKSERVE_CLUSTER=kind|minikube   RISKSERVE_CONTAINER_TOOL=docker|podman
#        RISKSERVE_IMAGE_TAG=<tag> (with --skip-build: an image riskserve:<tag> you built before)
#        RISKSERVE_CLUSTER_NAME, RISKSERVE_NAMESPACE, RISKSERVE_*_LOCAL_PORT (see k8s/lib.sh)
set -euo pipefail

# shellcheck source=k8s/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

SKIP_BUILD=0
PORT_FORWARD=1
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
while (($#)); do
  case "$1" in
    --skip-build) SKIP_BUILD=1 ;;
    --no-port-forward) PORT_FORWARD=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done

check_prerequisites() {
  log "Checking prerequisites"
  check_provider
  need kubectl "install kubectl ${KUBECTL_VERSION}: https://kubernetes.io/docs/tasks/tools/"
  need helm "install helm ${HELM_VERSION}: https://helm.sh/docs/intro/install/"
  check_version kubectl "${KUBECTL_VERSION}" "$(kubectl version --client 2>/dev/null | head -n 1)"
  check_version helm "${HELM_VERSION}" "$(helm version --short 2>/dev/null)"
  if [[ "${CLUSTER_PROVIDER}" == "kind" ]]; then
    need kind "install kind ${KIND_VERSION}: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
    check_version kind "${KIND_VERSION}" "$(kind version 2>/dev/null)"
  else
    need minikube "install minikube ${MINIKUBE_VERSION}: https://minikube.sigs.k8s.io/docs/start/"
    check_version minikube "${MINIKUBE_VERSION}" "$(minikube version --short 2>/dev/null)"
  fi
  if ((SKIP_BUILD)); then
    [[ -n "${RISKSERVE_IMAGE_TAG:-}" ]] || die "--skip-build needs RISKSERVE_IMAGE_TAG=<tag of an image riskserve:<tag> you built>"
  else
    need "${CONTAINER_TOOL}" "install ${CONTAINER_TOOL} (Docker Desktop / docker engine, or podman) and start it"
    "${CONTAINER_TOOL}" info >/dev/null 2>&1 || die "${CONTAINER_TOOL} is installed but not running: start it"
    BENTOML="${REPO_ROOT}/.venv/bin/bentoml"
    [[ -x "${BENTOML}" ]] || BENTOML="$(command -v bentoml || true)"
    [[ -n "${BENTOML}" ]] || die "bentoml not found: run 'make setup' (creates .venv with the pinned requirements)"
    [[ -f "${REPO_ROOT}/bentofile.yaml" ]] || die "no bentofile.yaml in ${REPO_ROOT}: nothing to build"
  fi
  if ! command -v openssl >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
    die "need openssl or python3 to generate the API key"
  fi
}

ensure_cluster() {
  log "Cluster: ${CLUSTER_PROVIDER} '${CLUSTER_NAME}'"
  if [[ "${CLUSTER_PROVIDER}" == "kind" ]]; then
    kind_env
    if cluster_exists; then
      info "exists, reusing it"
    else
      kind create cluster --name "${CLUSTER_NAME}" --config "${K8S_DIR}/kind-config.yaml" \
        --image "${KIND_NODE_IMAGE}" --wait 120s
    fi
  else
    # `minikube start` on an existing profile starts it again if stopped, and changes nothing else.
    minikube start -p "${CLUSTER_NAME}" --kubernetes-version="${MINIKUBE_KUBERNETES_VERSION}" \
      --cpus=4 --memory=6g --driver="${RISKSERVE_MINIKUBE_DRIVER:-${CONTAINER_TOOL}}"
  fi
  kctl cluster-info >/dev/null || die "cannot reach the cluster through context ${KUBE_CONTEXT}"
}

build_image() {
  if ((SKIP_BUILD)); then
    IMAGE_TAG="${RISKSERVE_IMAGE_TAG}"
    log "Skipping the build: using riskserve:${IMAGE_TAG}"
    "${CONTAINER_TOOL}" image inspect "riskserve:${IMAGE_TAG}" >/dev/null 2>&1 \
      || die "image riskserve:${IMAGE_TAG} not found in ${CONTAINER_TOOL}"
    return
  fi
  local python="${REPO_ROOT}/.venv/bin/python"
  if [[ -x "${python}" ]]; then
    log "Training any model that has no version in the store yet"
    (cd "${REPO_ROOT}" && "${python}" -m training all --missing-only) \
      || die "training failed: run 'make train' in ${REPO_ROOT} and read its one-line error"
  else
    info "no ${python}: assuming the models are already trained (run 'make setup' otherwise)"
  fi
  log "Building the Bento (bentoml build) from ${REPO_ROOT}"
  local out tag
  out="$(cd "${REPO_ROOT}" && "${BENTOML}" build --output tag)" \
    || die "bentoml build failed: are the models trained and promoted? (see the project README)"
  tag="$(printf '%s\n' "${out}" | sed -n 's/^__tag__:\(.*\)$/\1/p' | tail -n 1)"
  [[ -n "${tag}" ]] || die "could not read the Bento tag from bentoml build output: ${out}"
  IMAGE_TAG="${tag#*:}"
  log "Containerizing ${tag} as riskserve:${IMAGE_TAG} (${CONTAINER_TOOL})"
  if "${CONTAINER_TOOL}" image inspect "riskserve:${IMAGE_TAG}" >/dev/null 2>&1; then
    info "image riskserve:${IMAGE_TAG} already built"
  else
    (cd "${REPO_ROOT}" && "${BENTOML}" containerize "${tag}" --backend "${CONTAINER_TOOL}" \
      --image-tag "riskserve:${IMAGE_TAG}")
  fi
}

load_image() {
  local image="riskserve:${IMAGE_TAG}"
  log "Loading ${image} into the cluster"
  if [[ "${CLUSTER_PROVIDER}" == "minikube" ]]; then
    minikube -p "${CLUSTER_NAME}" image load "${image}"
  elif [[ "${CONTAINER_TOOL}" == "docker" ]]; then
    # kind skips the copy when the node already has this image id.
    kind load docker-image "${image}" --name "${CLUSTER_NAME}"
  else
    mkdir -p "${STATE_DIR}"
    local archive="${STATE_DIR}/riskserve-image.tar"
    podman save -o "${archive}" "${image}"
    kind load image-archive "${archive}" --name "${CLUSTER_NAME}"
    rm -f "${archive}"
  fi
}

install_monitoring() {
  log "kube-prometheus-stack ${KPS_CHART_VERSION} in namespace ${MONITORING_NAMESPACE}"
  helm repo add prometheus-community "${KPS_REPO_URL}" --force-update >/dev/null
  helm repo update prometheus-community >/dev/null
  hlm upgrade --install "${KPS_RELEASE}" prometheus-community/kube-prometheus-stack \
    --version "${KPS_CHART_VERSION}" \
    --namespace "${MONITORING_NAMESPACE}" --create-namespace \
    --values "${K8S_DIR}/kube-prometheus-stack-values.yaml" \
    --wait --timeout 15m
}

generate_key() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 32
  else
    python3 -c 'import secrets; print(secrets.token_hex(32))'
  fi
}

ensure_key_secret() {
  log "API key Secret ${NAMESPACE}/${KEY_SECRET}"
  kctl get namespace "${NAMESPACE}" >/dev/null 2>&1 || kctl create namespace "${NAMESPACE}" >/dev/null
  if kctl -n "${NAMESPACE}" get secret "${KEY_SECRET}" >/dev/null 2>&1; then
    info "exists, keeping its key"
    return
  fi
  # The key goes through a private temporary file, never through the command line.
  local keyfile
  keyfile="$(mktemp)"
  chmod 600 "${keyfile}"
  generate_key >"${keyfile}"
  kctl -n "${NAMESPACE}" create secret generic "${KEY_SECRET}" --from-file=api-keys="${keyfile}" >/dev/null
  rm -f "${keyfile}"
  info "generated a new key"
}

install_riskserve() {
  log "Installing helm/riskserve as release ${RELEASE} in namespace ${NAMESPACE}"
  hlm upgrade --install "${RELEASE}" "${REPO_ROOT}/helm/riskserve" \
    --namespace "${NAMESPACE}" \
    --values "${K8S_DIR}/riskserve-values.yaml" \
    --set "image.tag=${IMAGE_TAG}" \
    --set "monitoring.prometheusRelease=${KPS_RELEASE}" \
    --set "auth.existingSecret=${KEY_SECRET}" \
    --wait --timeout 15m \
    || die "helm install failed: kubectl --context ${KUBE_CONTEXT} -n ${NAMESPACE} describe pods; kubectl --context ${KUBE_CONTEXT} -n ${NAMESPACE} logs deploy/${RELEASE}"
  log "helm test ${RELEASE}"
  hlm test "${RELEASE}" --namespace "${NAMESPACE}" --logs --timeout 5m
}

port_forwards() {
  ((PORT_FORWARD)) || return 0
  log "Port-forwards to 127.0.0.1 (k8s/down.sh stops them)"
  start_port_forward riskserve "${NAMESPACE}" "svc/${RELEASE}" \
    "${HTTP_LOCAL_PORT}:http" "${GRPC_LOCAL_PORT}:grpc"
  start_port_forward grafana "${MONITORING_NAMESPACE}" "svc/${KPS_RELEASE}-grafana" \
    "${GRAFANA_LOCAL_PORT}:80"
  start_port_forward prometheus "${MONITORING_NAMESPACE}" "svc/${KPS_RELEASE}-prometheus" \
    "${PROMETHEUS_LOCAL_PORT}:9090"
}

summary() {
  local ctx="${KUBE_CONTEXT}"
  cat >&2 <<EOF

riskserve is up (image riskserve:${IMAGE_TAG}, context ${ctx}).
  API:        http://127.0.0.1:${HTTP_LOCAL_PORT}   gRPC: 127.0.0.1:${GRPC_LOCAL_PORT}
  Grafana:    http://127.0.0.1:${GRAFANA_LOCAL_PORT}   (user admin; password:
              kubectl --context ${ctx} -n ${MONITORING_NAMESPACE} get secret ${KPS_RELEASE}-grafana -o jsonpath='{.data.admin-password}' | base64 -d)
  Prometheus: http://127.0.0.1:${PROMETHEUS_LOCAL_PORT}
  API key:    export RISKSERVE_API_KEY="\$(kubectl --context ${ctx} -n ${NAMESPACE} get secret ${KEY_SECRET} -o jsonpath='{.data.api-keys}' | base64 -d | awk '!/^[[:space:]]*(#|\$)/ { print \$1; exit }')"
  More keys:  scoped lines (name= models= rate=), rotated without a restart: helm/riskserve/README.md
  Try:        curl -s -H "X-API-Key: \$RISKSERVE_API_KEY" -H 'Content-Type: application/json' \\
                -d '{"model":"fraud","inputs":[{"step":1,"type":"TRANSFER","amount":181.0,"oldbalance_org":181.0,"newbalance_orig":0.0,"oldbalance_dest":0.0,"newbalance_dest":0.0}]}' \\
                http://127.0.0.1:${HTTP_LOCAL_PORT}/v1/predict
  Tear down:  k8s/down.sh
EOF
}

main() {
  check_prerequisites
  ensure_cluster
  build_image
  load_image
  install_monitoring
  ensure_key_secret
  install_riskserve
  port_forwards
  summary
}

main
