#!/bin/sh
# The official image's contract, in short: an empty $PGDATA is initialised with the superuser
# `postgres` and $POSTGRES_PASSWORD (or the contents of $POSTGRES_PASSWORD_FILE), the scripts in
# /docker-entrypoint-initdb.d run once, then the server listens on every address with password
# authentication for the network. POSTGRES_USER and POSTGRES_DB are not supported: say so.
set -eu
if [ -n "${POSTGRES_USER:-}${POSTGRES_DB:-}" ]; then
    echo "postgres stand-in: POSTGRES_USER and POSTGRES_DB are not supported (user and database: postgres)" >&2
    exit 1
fi
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
    fi
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}"
    password_file=$(mktemp)
    trap 'rm -f "$password_file"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username=postgres --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$password_file"
    printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    for script in /docker-entrypoint-initdb.d/*.sql; do
        [ -e "$script" ] && psql -v ON_ERROR_STOP=1 --username=postgres --no-psqlrc -q -f "$script"
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
fi
if [ "$1" = postgres ]; then shift; set -- postgres -c listen_addresses='*' "$@"; fi
exec "$@"
