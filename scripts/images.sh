#!/usr/bin/env bash
# make images: every service's image from the one Dockerfile, with the workspace's pinned
# versions, then each image's size.
#   meshplate/<name>:local and :<version>, labelled with the version, the commit and the source.
#   LOCAL_IMAGES=1   first build the local stand-ins (scripts/local_images.sh) and build the
#                    services on the local Python base (no registry needed); tagged :local only,
#                    never as a release.
#   CONTAINER_ENGINE podman or docker (default: whichever is installed, podman first).
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
if [ -z "$engine" ]; then
  echo "images: no container engine: install podman and runc (Debian packages) or Docker" >&2
  exit 1
fi
build=("$engine" build --quiet)
if [ "$(basename "$engine")" = podman ]; then
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
  # Docker's image format (the OCI one has no HEALTHCHECK); the last commit's time, so two
  # builds of one commit give the same layers where their contents are the same.
  build+=(--format docker --timestamp "$(git log -1 --format=%ct 2>/dev/null || echo 0)")
else
  export DOCKER_BUILDKIT=1 # cache mounts and COPY --chmod
fi
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then
  revision="$revision-dirty"
fi
# The remote's URL without any credentials in it.
source=$(git remote get-url origin 2>/dev/null | sed -E 's#//[^/@]+@#//#' || true)

if [ "${LOCAL_IMAGES:-0}" = 1 ]; then
  bash scripts/local_images.sh "$engine"
  # shellcheck source=../deploy/local/images.env
  . deploy/local/images.env
  build+=(--build-arg PYTHON_IMAGE="$PYTHON_IMAGE")
fi

for service in auth users ratelimit gateway worker; do
  echo "images: meshplate/$service" >&2
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' "services/$service/pyproject.toml")
  tags=(-t "meshplate/$service:local")
  [ "${LOCAL_IMAGES:-0}" = 1 ] || tags+=(-t "meshplate/$service:$version")
  "${build[@]}" --build-arg SERVICE="$service" --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" --build-arg SOURCE="${source:-unknown}" "${tags[@]}" . >/dev/null
done
"$engine" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E "^(localhost/)?meshplate/[a-z]+:local " | sort
