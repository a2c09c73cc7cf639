# One entry point for everything: `make demo`, `make test`, `make lint`.
# Every target that needs Python depends on `setup`, so a fresh clone works.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup uv lock sandbox-tools test soak test-image arm64-deps lint run bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# --- setup -------------------------------------------------------------------
# uv.lock pins every dependency (transitive ones too) with hashes, for Python 3.11-3.13 on Linux and
# macOS, any CPU; pyproject.toml says what the project asks for. `make lock` re-resolves it and writes its
# two exports: requirements.txt (the container's runtime dependencies, what the Dockerfile installs)
# and requirements-uv.txt (uv itself, which setup installs first). tests/unit/cloud/test_lock.py
# fails when either export, or the lock, is out of date.

UV     := $(BIN)/uv
UV_PIN := $(shell sed -n 's/^uv==\([^ ]*\) .*/\1/p' requirements-uv.txt)
EXPORT := $(UV) export --frozen --no-emit-project --quiet

setup: $(STAMP) sandbox-tools  ## create .venv from uv.lock (runtime and dev dependencies; and bubblewrap)

# uv comes from PyPI as a hash-checked wheel (requirements-uv.txt) into a plain venv, then installs
# exactly the lock (sync --locked also refuses a lock older than pyproject.toml). A venv whose uv
# is not the pinned one is made again.
uv: requirements-uv.txt
	@[ "$$($(UV) --version 2>/dev/null | cut -d' ' -f2)" = "$(UV_PIN)" ] || { \
	  echo "installing uv $(UV_PIN) into a new $(VENV) (hash-checked: requirements-uv.txt)"; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) && \
	  $(BIN)/python -m pip install -q --require-hashes --no-deps --only-binary=:all: -r requirements-uv.txt; }

$(STAMP): pyproject.toml uv.lock requirements-uv.txt | uv
	@$(UV) sync --locked --quiet || { echo "setup: uv sync failed (above); when uv.lock is older than pyproject.toml, run make lock" >&2; exit 1; }
	@touch $@

lock: uv  ## re-resolve uv.lock from pyproject.toml and export requirements*.txt (LOCK_FLAGS="--upgrade-package NAME")
	$(UV) lock $(LOCK_FLAGS)
	$(EXPORT) --no-dev >requirements.txt
	$(EXPORT) --only-group uv >requirements-uv.txt

# bubblewrap isolates local sessions (agentcore_local --sandbox bwrap); slirp4netns gives each
# session its own network (outbound only: no route to the host's 127.0.0.1); e2fsprogs' mkfs.ext4
# makes each session's filesystem of its quota (docs/disk.md).
sandbox-tools:
	@{ command -v bwrap && command -v slirp4netns && PATH=$$PATH:/usr/sbin:/sbin command -v mkfs.ext4; } >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  echo "installing bubblewrap, slirp4netns and e2fsprogs (Debian packages) for session sandboxes"; \
	  { $$SUDO apt-get install -y -q bubblewrap slirp4netns e2fsprogs >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q bubblewrap slirp4netns e2fsprogs >/dev/null 2>&1; }; } || \
	  echo "warning: could not install bubblewrap/slirp4netns/e2fsprogs; the local runtime will fall back to --sandbox process (not isolated), a shared network, or a measured storage quota"; }

# --- checks ------------------------------------------------------------------

# The suite runs shuffled (pytest-random-order: the modules, and the tests in each), so no test can
# lean on another's leftovers. The seed is printed first; `make test SEED=N` replays that order, and
# PYTEST_ARGS adds pytest flags (e.g. PYTEST_ARGS="-x tests/unit/cloud/test_deploy.py").
# JOBS test processes, each taking whole files (a file's runtime fixture is started once); JOBS=0 runs in one.
JOBS ?= $(shell nproc)
ifndef SEED
SEED := $(shell od -An -N3 -tu4 /dev/urandom | tr -d ' ')
endif
test: setup  ## run the test suite, shuffled (SEED=N replays an order)
	@echo "test order: --random-order-seed=$(SEED) (replay: make test SEED=$(SEED))"
	$(BIN)/pytest -q -p random_order --random-order-seed=$(SEED) -n $(JOBS) --dist loadfile $(PYTEST_ARGS)

SEQUENCES ?= 60
soak: setup  ## the long runs: 100 stop/resume cycles, and SEQUENCES random call sequences (model-based)
	$(BIN)/pytest -q -s -m soak
	SEQUENCES=$(SEQUENCES) SEQUENCE_STEPS=25 $(BIN)/pytest -q -s tests/e2e/local/test_sequences.py

# The image itself, on this machine (as root): a Docker engine (started if none answers), bases
# made from Debian and npm, the Dockerfile built with plain `docker build`, then the container and
# `agentcore_local --sandbox docker` proven over HTTP and boto3 (tests/e2e/local/test_image.py), and an
# image of a stranger's agent run with its own entrypoint (test_own_image.py; docs/own-agent.md,
# docs/deploy.md). ARCH=arm64 does it all under qemu (57 minutes on 2 busy cores).
ARCH ?= amd64

test-image: setup  ## build the Dockerfile on local bases and prove the image works (root; ARCH=arm64: emulated)
	IMAGE_ARCH=$(ARCH) $(BIN)/pytest -q -s -m image tests/e2e/local/test_image.py tests/e2e/local/test_own_image.py

# Every runtime dependency in the lock has a linux/arm64 wheel (what AgentCore runs) for the
# production image's Python 3.12 and glibc (bookworm: manylinux_2_36): uv installs the hash-checked
# export for that platform into a scratch directory, wheels only, in seconds.
arm64-deps: setup  ## check from uv.lock that every runtime dependency has a linux/arm64 wheel for Python 3.12
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(EXPORT) --no-dev >"$$tmp/requirements.txt" && \
	$(UV) pip install -q --target "$$tmp/site" --python-platform aarch64-manylinux_2_36 --python-version 3.12 \
	  --only-binary :all: --no-deps --require-hashes -r "$$tmp/requirements.txt" 2>"$$tmp/uv.log" || \
	  { cat "$$tmp/uv.log" >&2; echo "arm64-deps: a runtime dependency has no linux/arm64 wheel (above)" >&2; exit 1; }; \
	echo "arm64-deps: all $$(ls -d "$$tmp"/site/*.dist-info | wc -l) runtime dependencies have a linux/arm64 wheel for Python 3.12"

lint: setup  ## ruff check + ruff format --check + hadolint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile

# --- the agent service (coding_agent.py) --------------------------------------

run: setup  ## serve coding_agent.py on 127.0.0.1:8080 (PORT overrides)
	$(BIN)/python coding_agent.py

bench: setup  ## measure cold start, turn overhead (direct, through agentcore_local), history, stop/resume, scale, a 10,000-file workspace; writes bench/results.json (BENCH_FLAGS=--quick: a smoke run)
	$(BIN)/python bench/bench.py $(BENCH_FLAGS)

# --- the path to AWS ----------------------------------------------------------
# make role build push deploy: the execution role, the arm64 image in ECR, the runtime.
# Override any variable: make deploy REGION=us-east-1 TAG=v2 DEPLOY_FLAGS=--yes
.PHONY: build push deploy destroy role aws-credentials docker-buildx

REGION       ?= $(or $(AWS_REGION),$(AWS_DEFAULT_REGION),us-west-2)
REPOSITORY   ?= coding-agent
# A new tag per commit, so `deploy` sees a new image (re-pushing one tag is not a change).
TAG          ?= $(shell git describe --always --dirty 2>/dev/null || echo latest)
RUNTIME_NAME ?= coding_agent
ROLE_NAME    ?= AgentCoreRuntime-$(RUNTIME_NAME)
DEPLOY_FLAGS ?=
DESTROY_FLAGS ?=
# Looked up once, and only by the targets that use it: the aws CLI if present, else boto3.
ACCOUNT      ?= $(eval ACCOUNT := $(shell aws sts get-caller-identity --query Account --output text 2>/dev/null || \
  $(BIN)/python -c "import boto3; print(boto3.client('sts').get_caller_identity()['Account'])" 2>/dev/null))$(ACCOUNT)
REGISTRY      = $(ACCOUNT).dkr.ecr.$(REGION).amazonaws.com
IMAGE         = $(REGISTRY)/$(REPOSITORY):$(TAG)
ROLE_ARN      = arn:aws:iam::$(ACCOUNT):role/$(ROLE_NAME)

aws-credentials:
	@test -n "$(ACCOUNT)" || { echo "no AWS credentials: run 'aws configure' or 'aws sso login' (or export AWS_PROFILE), then retry" >&2; exit 1; }

docker-buildx:
	@command -v docker >/dev/null 2>&1 || { echo "docker is not installed: see https://docs.docker.com/get-docker/" >&2; exit 1; }
	@docker buildx version >/dev/null 2>&1 || { echo "docker buildx is missing: install the buildx plugin (https://github.com/docker/buildx#installing)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "the docker engine is not running: start Docker, then retry" >&2; exit 1; }

build: docker-buildx  ## build the linux/arm64 image REPOSITORY:TAG
	docker buildx build --platform linux/arm64 -t $(REPOSITORY):$(TAG) --load .

push: docker-buildx aws-credentials  ## push REPOSITORY:TAG to ECR, creating the repository when missing
	@command -v aws >/dev/null 2>&1 || { echo "the aws CLI is missing: see https://aws.amazon.com/cli/" >&2; exit 1; }
	aws ecr describe-repositories --region $(REGION) --repository-names $(REPOSITORY) >/dev/null 2>&1 || \
	  aws ecr create-repository --region $(REGION) --repository-name $(REPOSITORY) \
	    --image-scanning-configuration scanOnPush=true >/dev/null
	aws ecr get-login-password --region $(REGION) | docker login --username AWS --password-stdin $(REGISTRY)
	docker tag $(REPOSITORY):$(TAG) $(IMAGE)
	docker push $(IMAGE)

deploy: setup aws-credentials  ## create or update the runtime with the pushed image (deploy.py ensure)
	$(BIN)/python deploy.py ensure --name $(RUNTIME_NAME) --region $(REGION) \
	  --image $(IMAGE) --role-arn $(ROLE_ARN) $(DEPLOY_FLAGS)

destroy: setup  ## delete the runtime and every session's storage (deploy.py delete)
	$(BIN)/python deploy.py delete --name $(RUNTIME_NAME) --region $(REGION) $(DESTROY_FLAGS)

role: setup aws-credentials  ## create or update the runtime's execution role from iam/
	$(BIN)/python deploy.py role --name $(RUNTIME_NAME) --role-name $(ROLE_NAME) \
	  --repository $(REPOSITORY) --region $(REGION)

# --- the local runtime (agentcore_local) ----------------------------------------
# AgentCore Runtime with session storage on this machine (docs/local-runtime.md).
.PHONY: demo serve-local

LOCAL_PORT ?= 8787

# Offline: a throwaway agentcore_local on a free port, the agent's BedrockModel answered by the
# listener's scripted model (a test double), client.py demo,
# and the server stopped (with every session) however the demo ends.
demo: setup  ## build, stop, resume, inspect: the session-storage demo, offline on agentcore_local
	@state=$$(mktemp -d); \
	MODEL_PROVIDER= SCRIPTED_PLAN= $(BIN)/python -m agentcore_local serve --port 0 --model-backend scripted \
	  --state-dir "$$state" >"$$state/serve.log" 2>&1 & server=$$!; \
	trap 'kill $$server 2>/dev/null; wait $$server 2>/dev/null; rm -rf "$$state"' EXIT; \
	trap 'exit 130' INT TERM; \
	if ! exports=$$($(BIN)/python -m agentcore_local env --state-dir "$$state" --wait 60); then \
	  echo "agentcore_local did not start; the end of its log:" >&2; tail -n 20 "$$state/serve.log" >&2; exit 1; \
	fi; \
	eval "$$exports"; export SESSION_ID=$$($(BIN)/python client.py new-session-id); \
	$(BIN)/python client.py demo || exit 1; \
	echo; echo "[after] redeploy: a new runtime version resets every session's storage, as on AWS;"; \
	echo "        the next turn finds files and conversation back from the session's S3 backup"; \
	$(BIN)/python deploy.py update --env DEMO_REDEPLOY=1 --yes >"$$state/deploy.log" 2>&1 || \
	  { echo "deploy.py update failed:" >&2; tail -n 5 "$$state/deploy.log" >&2; exit 1; }; \
	$(BIN)/python client.py invoke "What does the workspace hold after the redeploy?" 2>&1 | tee "$$state/after.log"; \
	grep -q "restored from backup" "$$state/after.log" || { echo "FAIL: nothing came back from the backup" >&2; exit 1; }; \
	$(BIN)/python client.py exec "ls -A && grep -c echo index.js"

serve-local: setup  ## run agentcore_local on 127.0.0.1:$(LOCAL_PORT) (MODEL_PROVIDER defaults to scripted)
	MODEL_PROVIDER=$${MODEL_PROVIDER:-scripted} $(BIN)/python -m agentcore_local serve --port $(LOCAL_PORT)
