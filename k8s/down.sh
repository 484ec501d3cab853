#!/usr/bin/env bash
# Tear down what k8s/up.sh made: stop its port-forwards, then delete the local cluster
# (kind or minikube). With --keep-cluster, uninstall riskserve and kube-prometheus-stack and delete
# their namespaces instead, leaving the cluster (and its loaded images) for a faster next up.
# Safe to run again: whatever is already gone is reported and skipped.
#
# Usage: k8s/down.sh [--keep-cluster] [--help]
# Env:   RISKSERVE_CLUSTER=kind|minikube, RISKSERVE_CLUSTER_NAME, RISKSERVE_NAMESPACE (see k8s/lib.sh)
set -euo pipefail

# shellcheck source=k8s/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

KEEP_CLUSTER=0
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
while (($#)); do
  case "$1" in
    --keep-cluster) KEEP_CLUSTER=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage; die "unknown argument: $1" ;;
  esac
  shift
done

check_provider

log "Stopping port-forwards"
stop_port_forwards

if [[ "${CLUSTER_PROVIDER}" == "kind" ]]; then
  need kind "install kind ${KIND_VERSION}: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  kind_env
else
  need minikube "install minikube ${MINIKUBE_VERSION}: https://minikube.sigs.k8s.io/docs/start/"
fi

if ! cluster_exists; then
  log "Cluster ${CLUSTER_PROVIDER} '${CLUSTER_NAME}' does not exist: nothing else to do"
  exit 0
fi

if ((KEEP_CLUSTER)); then
  need kubectl "install kubectl ${KUBECTL_VERSION}: https://kubernetes.io/docs/tasks/tools/"
  need helm "install helm ${HELM_VERSION}: https://helm.sh/docs/intro/install/"
  for pair in "${RELEASE}:${NAMESPACE}" "${KPS_RELEASE}:${MONITORING_NAMESPACE}"; do
    release="${pair%%:*}"
    namespace="${pair#*:}"
    if hlm status "${release}" --namespace "${namespace}" >/dev/null 2>&1; then
      log "Uninstalling ${release} from ${namespace}"
      hlm uninstall "${release}" --namespace "${namespace}" --wait
    else
      info "release ${release} not installed"
    fi
    if kctl get namespace "${namespace}" >/dev/null 2>&1; then
      log "Deleting namespace ${namespace}"
      kctl delete namespace "${namespace}" --wait=true
    fi
  done
  log "Done; the cluster ${CLUSTER_NAME} is kept (k8s/down.sh without --keep-cluster deletes it)"
  exit 0
fi

log "Deleting cluster ${CLUSTER_PROVIDER} '${CLUSTER_NAME}'"
if [[ "${CLUSTER_PROVIDER}" == "kind" ]]; then
  kind delete cluster --name "${CLUSTER_NAME}"
else
  minikube delete -p "${CLUSTER_NAME}"
fi
log "Done"
