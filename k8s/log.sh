#!/usr/bin/env bash
# shellcheck shell=bash
# Messages and prerequisite checks shared by every k8s/ script (sourced, never run).

if [[ -t 2 ]]; then
  log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
  log() { printf '==> %s\n' "$*" >&2; }
fi
info() { printf '    %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# need TOOL "one line on how to install it"
need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}
