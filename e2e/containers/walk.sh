#!/bin/sh
# The README's curl walk, from inside the compose network: sign up, log in, /me, refresh, log
# out (then 401), a task to `succeeded`, the welcome mail in the catcher. One line per step,
# "<step> <status>"; the first unexpected answer ends the walk with exit code 1, its body (or
# curl's failure) on standard error.
# Usage: walk.sh <edge URL> <mail URL> <username>
set -eu
edge=$1 mail=$2 who=$3
jar=$(mktemp)

# step NAME EXPECTED CURL-ARGS...: run curl, print "NAME STATUS", keep the body in $body.
step() {
    name=$1 expected=$2
    shift 2
    : > /tmp/body
    status=$(curl -sS -o /tmp/body -w '%{http_code}' --max-time 10 "$@" 2>/tmp/curl) \
        || status="curl-failed-$?"
    body=$(cat /tmp/body)
    echo "$name $status"
    if [ "$status" != "$expected" ]; then
        echo "$name: expected $expected, got $status: $body $(cat /tmp/curl)" >&2
        exit 1
    fi
}
field() { printf '%s' "$body" | python3 -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

# Ready once every service answers the gateway (the containers' own checks passed already): as
# `make run` does, wait for it, up to a minute.
for waited in $(seq 0 60); do
    status=$(curl -s -o /tmp/body -w '%{http_code}' --max-time 5 "$edge/health/ready" || true)
    [ "$status" = 200 ] && break
    sleep 1
done
echo "waited ${waited}s for readiness: $(cat /tmp/body)" >&2
step ready 200 "$edge/health/ready"
step signup 201 -X POST "$edge/api/v1/user" -H 'content-type: application/json' \
    -d "{\"name\": \"Ann Lee\", \"username\": \"$who\", \"email\": \"$who@example.com\", \"password\": \"correct horse\"}"
step profile 200 "$edge/api/v1/user/$who"
step login 200 -c "$jar" -X POST "$edge/api/v1/login" -d "username=$who" -d 'password=correct horse'
token=$(field access_token)
step me 200 "$edge/api/v1/user/me/" -H "Authorization: Bearer $token"
step refresh 200 -b "$jar" -c "$jar" -X POST "$edge/api/v1/refresh"
step logout 200 -b "$jar" -X POST "$edge/api/v1/logout" -H "Authorization: Bearer $token"
step me-after-logout 401 "$edge/api/v1/user/me/" -H "Authorization: Bearer $token"

step task 201 -X POST "$edge/api/v1/tasks/task?message=hello"
task=$(field id)
# Polled as a patient client polls, backing off: an anonymous caller has 10 requests an hour on
# each path by default, so at most 10 polls, after 1, 2, 3, 5, 7, 11, 15, 23, 31 and 47 s.
for pause in 1 1 1 2 2 4 4 8 8 16; do
    sleep "$pause"
    step task-status 200 "$edge/api/v1/tasks/task/$task" >/dev/null
    [ "$(field status)" = succeeded ] && break
done
echo "task $(field status) $(field result)"

for _ in $(seq 60); do
    step mail 200 "$mail/api/v1/messages" >/dev/null
    to=$(printf '%s' "$body" | python3 -c "
import json, sys
print(' '.join(t['Address'] for m in json.load(sys.stdin)['messages'] for t in m['To']))")
    case " $to " in *" $who@example.com "*) break ;; esac
    sleep 0.5
done
echo "mail to: $to"
