#!/usr/bin/env bash
# The Bolt source beside the APOC export file on the same data (see docs/benchmarks.md):
#   scripts/bench-migrate-bolt.sh ROWS
# Generates the 31-table fixture (`--schema original31`, no invalid records: a dangling
# relationship cannot exist in a live graph), loads it into a fresh FalkorDB graph over
# RESP (scripts/bench/falkordb_load.py), then migrates it into MariaDB twice with the
# release build: `--source DIR` (the export file) and `--source bolt://127.0.0.1:7687` (the live
# graph; FalkorDB serves its graph `falkordb` over Bolt, whatever database the URL names),
# and prints both runs' times, rows/s and partition (read) step, and whether
# both loaded the same rows with the same checksums. Both servers run in a network
# namespace of their own (FalkorDB's Bolt listener binds every interface), each with its
# own files under .tmp/bench-bolt-ROWS. TSUNAGU_BIN overrides the binary (default: the
# release build in $CARGO_TARGET_DIR, built if missing); TSUNAGU_BOLT_SETTINGS is added to
# the Bolt URL as its query (e.g. `workers=2&page_size=20000`; default: none, the
# source's defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:?usage: $0 ROWS}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tsunagu-target}"
BIN=${TSUNAGU_BIN:-$CARGO_TARGET_DIR/release/tsunagu}
[ -x "$BIN" ] || cargo build --release -p tsunagu --locked >&2
FK=$(scripts/test-peers/falkordb.sh bin)
VENV=$PWD/.tmp/falkordb-venv
"$VENV/bin/python" -c 'import redis' 2>/dev/null || "$VENV/bin/pip" install -q redis >&2
scripts/test-peers/mariadb.sh install
W=$PWD/.tmp/bench-bolt-$ROWS
rm -rf "$W"
mkdir -p "$W/falkordb"
"$BIN" migrate gen-fixture --schema original31 --rows "$ROWS" --invalid-share 0 --out "$W/fixture" | tail -1
"$BIN" migrate gen-fixture --schema original31 --print-spec >"$W/spec.toml"
unshare -n bash -c '
  set -euo pipefail
  BIN=$1 FK=$2 W=$3 VENV=$4
  ip link set lo up
  export TSUNAGU_MARIADB_DIR="$W/mariadb"
  pid=
  trap "[ -n \"\$pid\" ] && kill \$pid 2>/dev/null; scripts/test-peers/mariadb.sh stop" EXIT
  unset TSUNAGU_TEST_MYSQL_URL
  mariadb_env=$(TSUNAGU_MARIADB_BUFFER_POOL=${TSUNAGU_MARIADB_BUFFER_POOL:-1G} scripts/test-peers/mariadb.sh start)
  eval "$mariadb_env"
  U=${TSUNAGU_TEST_MYSQL_URL%/*}
  "$FK/redis-server" --bind 127.0.0.1 --port 6390 --save "" --dir "$W/falkordb" \
    --loadmodule "$FK/falkordb.so" BOLT_PORT 7687 >"$W/falkordb/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/7687) 2>/dev/null && break; sleep 0.1; done
  "$VENV/bin/python" scripts/bench/falkordb_load.py "$W/fixture/export.json" 6390 falkordb
  run() {
    local name=$1 source=$2
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" migrate run --spec "$W/spec.toml" --source "$source" --target "$U/$name" \
      --report "$W/$name.json" --quiet >"$W/$name.out"
    t1=$(date +%s.%N)
    echo "$name: $(echo "$t1 - $t0" | bc) s wall (whole command)"
  }
  run apoc "$W/fixture"
  run bolt "bolt://127.0.0.1:7687${5:+?$5}"
  "$VENV/bin/python" scripts/bench/compare_reports.py "$W" apoc bolt
' bash "$BIN" "$FK" "$W" "$VENV" "${TSUNAGU_BOLT_SETTINGS:-}"
