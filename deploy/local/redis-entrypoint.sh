#!/bin/sh
# As the official image: a bare `redis-server` serves the container's network (no protected
# mode; the network is the boundary) and keeps its files in /data.
set -e
if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then set -- "$@" --protected-mode no; fi
exec "$@"
