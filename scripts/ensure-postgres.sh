#!/usr/bin/env bash
# Make a PostgreSQL server reachable for the test suite: use SLOTWISE_TEST_POSTGRES_URL if given,
# else the local server, starting it (or installing Debian's package) when it is not running.
set -euo pipefail
if [ -n "${SLOTWISE_TEST_POSTGRES_URL:-}" ]; then exit 0; fi
ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
if ready; then exit 0; fi
if ! command -v pg_ctlcluster >/dev/null; then
  echo "Installing PostgreSQL from Debian's packages…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do ready && break; sleep 1; done
ready || { echo "PostgreSQL did not start" >&2; exit 1; }
# Local tests connect as postgres over TCP without a password, as on this machine's default set-up.
if ! psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1; then
  hba=$(find /etc/postgresql/"$version"/main -name pg_hba.conf)
  sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi
