#!/usr/bin/env bash
# podman with this machine's settings: runc, cgroupfs, explicit ulimits and the host network
# namespace by default (k8s/image/lib.sh writes .cache/image/containers.conf for them).
# Used by tests/test_container.py and handy by hand, e.g.:
#   k8s/image/podman.sh ps -a
#   k8s/image/podman.sh run --rm --network host -e RISKSERVE_API_KEYS=k localhost/riskserve:latest
set -euo pipefail

# shellcheck source=k8s/image/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

need podman "run 'make image-deps' (installs Debian's podman, buildah, runc and debootstrap)"
use_runtime_conf
exec podman --cgroup-manager=cgroupfs --runtime=runc "$@"
