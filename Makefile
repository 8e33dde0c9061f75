# The two commands of the README: `make demo` runs the main job, `make test` the whole suite.
# Each installs what it needs and is quick when everything is already there.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Built and downloaded things live outside the clone, so a fresh clone on a warm machine reuses them.
CACHE := $(or $(AICONN_CACHE),$(HOME)/.cache/aiconn)
# uv installs the project's environment (about 10 s against pip's 45 from a warm cache, the same
# versions resolved); it lives in a tools environment of its own in the cache.
UV_VERSION := 0.13.9
UV_ENV := $(CACHE)/uv-$(UV_VERSION)
UV := $(UV_ENV)/bin/uv

.PHONY: demo test test-fast lint deps system-deps controlplane kwok prometheus3 images cluster \
	kustomize vllm sloth crds \
	down clean

$(STAMP): pyproject.toml | $(UV)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(UV) pip install -q --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

$(UV):
	$(PY) -m venv $(UV_ENV)
	$(UV_ENV)/bin/pip install -q 'uv==$(UV_VERSION)'

deps: $(STAMP)

# Debian packages: Prometheus, PostgreSQL and Chromium (for the NOC page test); containerd, runc,
# the CNI plugins, iptables, conntrack and iproute2 for the dev cluster's real node; mmdebstrap,
# umoci, gcc and libc6-dev (the static pause binary) to build its images.
system-deps:
	@need=""; \
	for p in prometheus:/usr/bin/prometheus chromium:/usr/bin/chromium \
	         chromium-driver:/usr/bin/chromedriver containerd:/usr/bin/containerd \
	         runc:/usr/sbin/runc containernetworking-plugins:/usr/lib/cni/bridge \
	         iptables:/usr/sbin/iptables conntrack:/usr/sbin/conntrack \
	         mmdebstrap:/usr/bin/mmdebstrap umoci:/usr/bin/umoci iproute2:/usr/sbin/ip \
	         gcc:/usr/bin/gcc libc6-dev:/usr/include/stdio.h; do \
	  [ -e "$${p#*:}" ] || need="$$need $${p%%:*}"; done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need="$$need postgresql"; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages:$$need"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	fi

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl.
controlplane:
	bash tools/k8s/build.sh >/dev/null

# Prometheus 3, beside Debian's 2.x: the SLA engine's tests run against both.
prometheus3:
	bash tools/prometheus/build.sh >/dev/null

# The tools built by a script of their own name: KWOK (the simulated nodes), kustomize (renders
# manifests/) and Sloth, which checks the SLO export: `sloth validate` / `sloth generate` on
# every sample SLA.
kwok kustomize sloth:
	bash tools/$@/build.sh >/dev/null

# The real node's images: the sandbox, a Debian Python base, aiconn's own, vLLM's CPU build
# (needs root).
images: $(STAMP) system-deps
	PYTHON=$(BIN)/python bash tools/images/build.sh >/dev/null

cluster: controlplane kwok images

vllm:
	bash tools/vllm/install.sh >/dev/null

crds: $(STAMP)
	$(BIN)/aiconn crds --write
	$(BIN)/aiconn prometheusrule --write

# mypy keeps its cache beside the other caches: a fresh clone rechecks only what differs from the
# last check on this machine (about 3 s here, against 24 s from nothing).
lint: $(STAMP)
	$(BIN)/ruff check aiconn tests bench
	$(BIN)/ruff format --check aiconn tests bench
	MYPY_CACHE_DIR=$(CACHE)/mypy $(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/aiconn crds --check
	$(BIN)/aiconn prometheusrule --check

# The suite in two parts. First the `serial` tests, which hold milliseconds to tolerances, alone
# on a quiet machine. Then everything else on TEST_WORKERS pytest-xdist workers, so that tests
# waiting for real minutes wait at the same time (tests/parallel.py: one integration or e2e file
# per unit, longest first; each worker starts its own components). Both parts always run; a part's
# exit code 5 (no tests collected) is a failure, not a green run; the first failure's code is
# make's. `pytest -q` alone still runs the whole suite in one process.
# TEST_WORKERS=5 is the default (a clean clone's `make test`: 12-13 minutes here, against 14-16
# minutes on four workers and about 50 in one process; on five, the real-node unit, which holds
# the demo's period, is the longest). `make test TEST_WORKERS=0` runs the whole suite in one
# pytest process, serial tests included (no second vLLM start for the serial part).
# Python writes its bytecode caches while the suite runs, even where the environment says
# PYTHONDONTWRITEBYTECODE: a clean clone's .venv has none, and every worker, gateway, operator and
# API process would compile each module it imports from source again (one collection of the
# suite: 14.6 s from source, 5.1 s from the caches). The serial part, first, fills them for the
# parallel part's workers. The caches are __pycache__ folders, ignored by git.
PYTEST = env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest
TEST_WORKERS ?= 5
test: $(STAMP) system-deps controlplane kwok prometheus3 images kustomize vllm sloth lint
ifeq ($(TEST_WORKERS),0)
	$(PYTEST) -q --durations=30; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi; exit $$rc
else
	@$(PYTEST) -q -m serial --durations=5; serial=$$?; \
	$(PYTEST) -q -n $(TEST_WORKERS) --dist loadfile -m "not serial" --durations=30; \
	parallel=$$?; \
	rc=0; for part in "serial $$serial" "parallel $$parallel"; do set -- $$part; \
	  if [ $$2 -eq 5 ]; then echo "$$1 part: no tests ran" >&2; fi; \
	  if [ $$rc -eq 0 ] && [ $$2 -ne 0 ]; then rc=$$2; [ $$rc -eq 5 ] && rc=1; fi; \
	done; exit $$rc
endif

test-fast: $(STAMP)
	$(BIN)/pytest -q tests/unit

demo: $(STAMP) system-deps controlplane kwok prometheus3 images kustomize vllm
	$(BIN)/aiconn dev up --demo

down: $(STAMP)
	$(BIN)/aiconn dev down

clean: down
	rm -rf $(VENV) .aiconn
