# syntax=docker/dockerfile:1
# One image for the operator and every media agent: `onair run` (operator) or
# `onair agent <ingest|transcoder|origin|recorder> --config /etc/onair/config.json`.
# tests/unit/test_dockerfile.py keeps this file honest (package list, ports, user, binaries).

# --- player: hls.js is vendored at build time, pinned by package-lock.json -----------------------
FROM node:20-bookworm-slim AS player
WORKDIR /src
COPY scripts/build-player scripts/build-player
COPY operator/onair/agent/player/package.json operator/onair/agent/player/package-lock.json operator/onair/agent/player/
RUN scripts/build-player

# --- runtime ----------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive

# Exactly the Debian packages of packaging/debian-packages.txt, the list scripts/install-deps
# installs on test machines too, so the image and the tests never run different media binaries.
COPY packaging/debian-packages.txt /tmp/debian-packages.txt
RUN apt-get update \
 && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/debian-packages.txt \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/debian-packages.txt

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# Package data globs pick the vendored player up, so it lands inside the installed package.
COPY --from=player /src/operator/onair/agent/static/vendor/ ./operator/onair/agent/static/vendor/
RUN pip install . \
 && rm -rf /src

# Non-root: every role writes only under /var/lib/onair (work dirs, origin data) and
# /recordings (the recorder's volume); binds are all above 1024.
RUN groupadd --system --gid 10001 onair \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/onair --no-create-home --shell /usr/sbin/nologin onair \
 && mkdir -p /var/lib/onair /recordings /etc/onair \
 && chown 10001:10001 /var/lib/onair /recordings
WORKDIR /var/lib/onair
USER 10001:10001

# Every port of onair/roles.py (agent API, RTMP, RTMPS, SRT, WHIP, origin HTTP and upload).
EXPOSE 8080 1935 1936 9998/udp 8443 8081 8082

ENTRYPOINT ["onair"]
