# syntax=docker/dockerfile:1
# One image for the operator and every media agent: `onair run` (operator) or
# `onair agent <ingest|transcoder|origin|recorder> --config /etc/onair/config.json`.
# tests/unit/test_dockerfile.py keeps this file honest (package lists, ports, user, binaries);
# tests/image/ builds it and runs what it contains.
#
# Build: `scripts/build-player && docker build -t onair .` (hls.js is vendored before the build,
# so the build needs no node). Without a Docker daemon or registry, scripts/build-image builds this
# same file with buildah, on a base image it makes from Debian packages (BASE_IMAGE below).

# Any Debian bookworm: Python 3.11 is bookworm's python3, and the media binaries come from the
# same Debian packages the test machines install.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DEBIAN_FRONTEND=noninteractive \
    VIRTUAL_ENV=/opt/onair \
    PATH=/opt/onair/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Exactly the Debian packages of system-packages/debian-packages.txt (the list scripts/install-deps
# installs on test machines too, so the image and the tests never run different media binaries)
# and system-packages/debian-image-packages.txt (what only the image needs: Python and its venv),
# without the files system-packages/dpkg-image-excludes.cfg names.
COPY system-packages/dpkg-image-excludes.cfg /etc/dpkg/dpkg.cfg.d/onair
COPY system-packages/debian-packages.txt system-packages/debian-image-packages.txt /tmp/
RUN apt-get update \
 && sed -e 's/#.*//' -e '/^[[:space:]]*$/d' /tmp/debian-packages.txt /tmp/debian-image-packages.txt \
    | xargs apt-get install -y --no-install-recommends \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/debian-packages.txt /tmp/debian-image-packages.txt

# Non-root: every role writes only under /var/lib/onair (work dirs, origin data) and
# /recordings (the recorder's volume); binds are all above 1024.
RUN groupadd --system --gid 10001 onair \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/onair --no-create-home --shell /usr/sbin/nologin onair \
 && mkdir -p /var/lib/onair /recordings /etc/onair \
 && chown 10001:10001 /var/lib/onair /recordings

# Debian's python3 refuses `pip install` into the system (PEP 668): the package lives in a venv
# on PATH. Dependencies first, in their own layer, so a source change rebuilds only the last
# steps. Wheels only: the image has no compiler, and every dependency ships manylinux wheels
# for amd64 and arm64 (aiortc's native parts included).
# A CA bundle for pip, for builds behind a TLS-intercepting proxy (unset: pip's own CAs).
# Build arguments are not kept in the image; scripts/build-image passes the host's bundle.
ARG PIP_CERT
WORKDIR /src
COPY pyproject.toml README.md ./
RUN python3 -m venv /opt/onair \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
    > /tmp/requirements.txt \
 && pip install --only-binary=:all: -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY operator ./operator
# The player page serves the vendored hls.js from the installed package; without it /player
# would 404 in every pod of this image. pip and setuptools go once the package is in: nothing
# imports them at run time.
RUN test -s operator/onair/agent/static/vendor/hls.min.js \
    || { echo "operator/onair/agent/static/vendor/hls.min.js is missing: run scripts/build-player before building the image" >&2; exit 1; } \
 && pip install --no-deps . \
 && pip uninstall -y pip setuptools \
 && cd / && rm -rf /src

WORKDIR /var/lib/onair
USER 10001:10001

# Every port of onair/roles.py (agent API, RTMP, RTMPS, SRT, WHIP, origin HTTP and upload).
EXPOSE 8080 1935 1936 9998/udp 8443 8081 8082

ENTRYPOINT ["onair"]
