#!/usr/bin/env bash
# Shared helpers of k8s/up.sh and k8s/down.sh: messages, prerequisite checks, cluster settings and
# the port-forward bookkeeping. Sourced, never run.
# shellcheck shell=bash
# The settings below are used by the scripts that source this file, not here:
# shellcheck disable=SC2034

K8S_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${K8S_DIR}/.." && pwd)"
# shellcheck source=k8s/versions.env
source "${K8S_DIR}/versions.env"

# Settings, all overridable from the environment.
CLUSTER_PROVIDER="${RISKSERVE_CLUSTER:-kind}"            # kind | minikube
CLUSTER_NAME="${RISKSERVE_CLUSTER_NAME:-riskserve}"      # kind cluster / minikube profile
CONTAINER_TOOL="${RISKSERVE_CONTAINER_TOOL:-docker}"     # docker | podman (builds the image)
NAMESPACE="${RISKSERVE_NAMESPACE:-riskserve}"
RELEASE="${RISKSERVE_RELEASE:-riskserve}"
MONITORING_NAMESPACE="monitoring"
# The riskserve chart's monitoring.prometheusRelease must equal this (k8s/riskserve-values.yaml).
KPS_RELEASE="kube-prometheus-stack"
KEY_SECRET="riskserve-api-keys"
STATE_DIR="${REPO_ROOT}/.cache/k8s"
# Local ports of the port-forwards.
HTTP_LOCAL_PORT="${RISKSERVE_HTTP_LOCAL_PORT:-3000}"
GRPC_LOCAL_PORT="${RISKSERVE_GRPC_LOCAL_PORT:-3001}"
GRAFANA_LOCAL_PORT="${RISKSERVE_GRAFANA_LOCAL_PORT:-3030}"
PROMETHEUS_LOCAL_PORT="${RISKSERVE_PROMETHEUS_LOCAL_PORT:-9090}"

export BENTOML_DO_NOT_TRACK=true

# shellcheck source=k8s/log.sh
source "${K8S_DIR}/log.sh"

# check_version TOOL WANTED ACTUAL: warn (not fail) when the installed version differs from the pin.
check_version() {
  if [[ "$3" != *"$2"* ]]; then
    warn "$1 is '${3:-unknown}', this setup is pinned to $2 (it may still work)"
  fi
}

check_provider() {
  case "${CLUSTER_PROVIDER}" in
    kind | minikube) ;;
    *) die "RISKSERVE_CLUSTER must be kind or minikube, not '${CLUSTER_PROVIDER}'" ;;
  esac
  case "${CONTAINER_TOOL}" in
    docker | podman) ;;
    *) die "RISKSERVE_CONTAINER_TOOL must be docker or podman, not '${CONTAINER_TOOL}'" ;;
  esac
}

# The kubeconfig context of the local cluster: every kubectl/helm call names it, so these scripts
# never act on whatever cluster happens to be current.
if [[ "${CLUSTER_PROVIDER}" == "kind" ]]; then
  KUBE_CONTEXT="kind-${CLUSTER_NAME}"
else
  KUBE_CONTEXT="${CLUSTER_NAME}"
fi

kctl() { kubectl --context "${KUBE_CONTEXT}" "$@"; }
hlm() { helm --kube-context "${KUBE_CONTEXT}" "$@"; }

cluster_exists() {
  if [[ "${CLUSTER_PROVIDER}" == "kind" ]]; then
    kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"
  else
    minikube profile list -o json 2>/dev/null | grep -Eq "\"Name\": ?\"${CLUSTER_NAME}\""
  fi
}

# kind uses Docker unless told to use Podman.
kind_env() {
  if [[ "${CONTAINER_TOOL}" == "podman" ]]; then
    export KIND_EXPERIMENTAL_PROVIDER=podman
  fi
}

pid_file() { printf '%s/port-forward-%s.pid' "${STATE_DIR}" "$1"; }

# Whether PID is alive and is one of our kubectl port-forwards (guards against a recycled PID).
is_our_port_forward() {
  local pid="$1"
  [[ -n "${pid}" ]] || return 1
  kill -0 "${pid}" 2>/dev/null || return 1
  ps -p "${pid}" -o args= 2>/dev/null | grep -q "port-forward"
}

# start_port_forward NAME NAMESPACE TARGET LOCAL:REMOTE [LOCAL:REMOTE...]
start_port_forward() {
  local name="$1" namespace="$2" target="$3"
  shift 3
  local file pid
  file="$(pid_file "${name}")"
  mkdir -p "${STATE_DIR}"
  if [[ -f "${file}" ]]; then
    pid="$(cat "${file}")"
    if is_our_port_forward "${pid}"; then
      info "${name}: port-forward already running (pid ${pid})"
      return 0
    fi
    rm -f "${file}"
  fi
  nohup kubectl --context "${KUBE_CONTEXT}" -n "${namespace}" port-forward --address 127.0.0.1 \
    "${target}" "$@" >"${STATE_DIR}/port-forward-${name}.log" 2>&1 &
  echo "$!" >"${file}"
  info "${name}: port-forward started (pid $!, log ${STATE_DIR}/port-forward-${name}.log)"
}

stop_port_forwards() {
  local file pid
  shopt -s nullglob
  for file in "${STATE_DIR}"/port-forward-*.pid; do
    pid="$(cat "${file}")"
    if is_our_port_forward "${pid}"; then
      kill "${pid}" && info "stopped port-forward pid ${pid} ($(basename "${file}" .pid))"
    fi
    rm -f "${file}"
  done
  shopt -u nullglob
}
