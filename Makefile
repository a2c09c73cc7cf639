# One entry point for everything: `make demo`, `make test`, `make lint`.
# Every target that needs Python depends on `setup`, so a fresh clone works.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup sandbox-tools test lint run

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

# --- setup -------------------------------------------------------------------

setup: $(STAMP) sandbox-tools  ## create .venv with the pinned requirements (and bubblewrap)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	@touch $@

# bubblewrap isolates local sessions (agentcore_local --sandbox bwrap).
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  echo "installing bubblewrap (Debian package) for session sandboxes"; \
	  { $$SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1; }; } || \
	  echo "warning: could not install bubblewrap; the local runtime will fall back to --sandbox process (not isolated)"; }

# --- checks ------------------------------------------------------------------

test: setup  ## run the test suite
	$(BIN)/pytest -q

lint: setup  ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# --- the agent service (coding_agent.py) --------------------------------------

run: setup  ## serve coding_agent.py on 127.0.0.1:$${PORT:-8080}
	$(BIN)/python coding_agent.py
