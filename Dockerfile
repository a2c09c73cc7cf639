# The coding agent for Amazon Bedrock AgentCore Runtime, which runs linux/arm64 (Graviton) only.
#   docker buildx build --platform linux/arm64 -t coding-agent:TAG --load .    (or: make build)
# The platform is also pinned in FROM, so a plain `docker build` on an x86 laptop (with QEMU)
# still produces an image AgentCore can run instead of one it rejects at deploy time.
# The three ARGs exist for the local image check (make test-image), which builds this same file
# on bases made from Debian and npm and for the machine's own architecture; their defaults are
# what production uses.
ARG PLATFORM=linux/arm64
ARG PYTHON_BASE=python:3.12-slim-bookworm
ARG NODE_BASE=node:20-bookworm-slim

# Node.js 20 for the projects the agent builds: copied from the official image, no install script.
# hadolint ignore=DL3029
FROM --platform=${PLATFORM} ${NODE_BASE} AS node

# hadolint ignore=DL3029
FROM --platform=${PLATFORM} ${PYTHON_BASE}

COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules

# git for the agent's projects. Not version-pinned: Debian security updates replace the old
# package in the archive, so a pin would break the build; the base image tag fixes the release.
# safe.directory: session storage is mounted by AgentCore with an owner we do not choose.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && git config --system --add safe.directory '*' \
 && git config --system user.name "coding agent" \
 && git config --system user.email "coding-agent@localhost" \
 && node --version && npm --version

WORKDIR /app
# requirements.txt is uv.lock's export of the runtime dependencies (make lock): every package,
# transitive ones too, pinned with its hashes. --require-hashes fails on any file that does not
# match; --no-deps because the list is already complete, so pip resolves nothing of its own.
COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.txt

COPY coding_agent.py ./
COPY agent/ agent/
COPY scripted/ scripted/
COPY durable/ durable/
COPY demo/ demo/

# DOCKER_CONTAINER makes the app listen on 0.0.0.0. (The agent's own tools never prompt: a
# shell command runs with no input, so no Strands consent variable is needed.)
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DOCKER_CONTAINER=1 \
    WORKSPACE_DIR=/mnt/workspace

# /mnt/workspace is restated on purpose in agent/service/settings.py and cloud/agent_runtime.py (test_dockerfile).
# The mount point of session storage. The process runs as root on purpose: AgentCore mounts
# session storage over this directory at invocation time with an owner and mode AWS does not
# document, so a chown here would not carry over and a non-root user risks EACCES on the one
# directory the agent must write. Each session already runs in its own microVM.
RUN mkdir -p /mnt/workspace

EXPOSE 8080
CMD ["python", "coding_agent.py"]
