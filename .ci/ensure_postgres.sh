#!/usr/bin/env bash
# Make sure the PostgreSQL server binaries (initdb, postgres) exist, installing the distribution package if not.
# The PostgreSQL profile-store tests start their own throw-away cluster on loopback (tests/postgres_server.py);
# they need only the binaries (and, when run as root, the `postgres` account the package creates), no running
# service. Safe to run repeatedly: does nothing when the binaries are present.
#   ENSURE_POSTGRES_SIMULATE=1  print what apt-get would do (apt-get -s) instead of installing.
set -euo pipefail

find_bin_dir() {
    if [[ -n "${RECLLM_POSTGRES_BIN:-}" && -x "${RECLLM_POSTGRES_BIN}/initdb" && -x "${RECLLM_POSTGRES_BIN}/postgres" ]]; then
        echo "${RECLLM_POSTGRES_BIN}"; return 0
    fi
    if command -v initdb >/dev/null && command -v postgres >/dev/null; then
        dirname "$(readlink -f "$(command -v initdb)")"; return 0
    fi
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
        if [[ -x "$dir/initdb" && -x "$dir/postgres" ]]; then echo "$dir"; return 0; fi
    done
    return 1
}

if bin_dir=$(find_bin_dir); then
    echo "ensure_postgres: found $("$bin_dir/postgres" --version) in $bin_dir"
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "ensure_postgres: PostgreSQL binaries missing and apt-get is not available; install PostgreSQL (>= 11)" \
         "and set RECLLM_POSTGRES_BIN to its bin directory" >&2
    exit 1
fi
as_root=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "ensure_postgres: need root (or sudo) to install postgresql" >&2; exit 1; }
    as_root=(sudo)
fi
simulate=()
[[ "${ENSURE_POSTGRES_SIMULATE:-0}" == 1 ]] && simulate=(-s)

echo "ensure_postgres: installing the postgresql package"
# Tests run their own clusters: don't let the package create (and start) a default cluster on port 5432.
if [[ ${#simulate[@]} -eq 0 ]]; then
    "${as_root[@]}" mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | "${as_root[@]}" tee /etc/postgresql-common/createcluster.d/recllm-ci.conf >/dev/null
fi
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${simulate[@]}" postgresql
[[ ${#simulate[@]} -ne 0 ]] && exit 0

if bin_dir=$(find_bin_dir); then
    echo "ensure_postgres: installed $("$bin_dir/postgres" --version) in $bin_dir"
else
    echo "ensure_postgres: postgresql installed but initdb/postgres still not found" >&2
    exit 1
fi
