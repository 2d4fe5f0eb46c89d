#!/usr/bin/env bash
# A throwaway PostgreSQL for people: the same recipe as the tests' fixture
# (tests/support/postgres_fixture.h), but it stays up until you stop it.
#
#   scripts/pg-test.sh start [DIR]   initdb into DIR (default /tmp/medcard-pgdev), start it on a
#                                    free port near 55432, print its URL
#   scripts/pg-test.sh url [DIR]     print the URL of the running server
#   scripts/pg-test.sh stop [DIR]    stop it and remove DIR
#
# Then, e.g.:  MEDCARD_BENCH_PG=$(scripts/pg-test.sh url) build/default/bench/ledger_bench
#              medcard host check --db "$(scripts/pg-test.sh url)"
# Needs Debian's postgresql-15 (apt-get install postgresql-15). As root, the server runs as the
# postgres user (PostgreSQL refuses root). Trust authentication: for a test machine only.
set -euo pipefail

BIN=${MEDCARD_PG_BINDIR:-/usr/lib/postgresql/15/bin}
DIR=${2:-/tmp/medcard-pgdev}
DB=medcard

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_of() { sed -n 4p "$DIR/data/postmaster.pid" 2>/dev/null; }

url() {
  local port
  port=$(port_of)
  [ -n "$port" ] || { echo "pg-test: no server running in $DIR" >&2; exit 1; }
  echo "postgresql://postgres@/$DB?host=$DIR&port=$port"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  [ -x "$BIN/initdb" ] || { echo "pg-test: $BIN/initdb missing: apt-get install postgresql-15" >&2; exit 1; }
  if [ -f "$DIR/data/postmaster.pid" ]; then url; return; fi
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$DIR"
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    as_postgres "$BIN/initdb" -D "$DIR/data" -A trust -U postgres -E UTF8 --locale=C >"$DIR/initdb.log"
  fi
  local port=$((55432 + $$ % 1000))
  while ! port_free "$port"; do port=$((port + 1)); done
  as_postgres "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-p $port -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null
  as_postgres "$BIN/psql" -h "$DIR" -p "$port" -U postgres -qAt -c "CREATE DATABASE $DB" postgres >/dev/null
  url
}

stop() {
  if [ -f "$DIR/data/postmaster.pid" ]; then
    as_postgres "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  url) url ;;
  stop) stop ;;
  *) echo "usage: scripts/pg-test.sh start|url|stop [DIR]" >&2; exit 2 ;;
esac
