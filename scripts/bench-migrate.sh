#!/usr/bin/env bash
# Migration benchmark: prints end-to-end rows/s of `tsunagu migrate run` on a generated
# fixture, its peak memory, time per table, and the raw `LOAD DATA LOCAL INFILE` rate of the
# same final CSV chunks into the same server (tables created LIKE the migrated ones, so
# without foreign keys: the raw figure is an upper bound).
#   scripts/bench-migrate.sh ROWS [MYSQL_URL]
# Without MYSQL_URL it starts the throwaway MariaDB of scripts/test-peers/mariadb.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:?usage: $0 ROWS [mysql://USER@HOST:PORT/DB]}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tsunagu-target}"
cargo build --release -p tsunagu --locked >&2
BIN="$CARGO_TARGET_DIR/release/tsunagu"
if [ -n "${2:-}" ]; then
  URL=$2
else
  eval "$(scripts/test-peers/mariadb.sh start)"
  trap 'scripts/test-peers/mariadb.sh stop' EXIT
  URL=${TSUNAGU_TEST_MYSQL_URL%/*}/bench
fi
HOSTPORT=${URL#mysql://*@}; HOSTPORT=${HOSTPORT%%/*}
USER_=${URL#mysql://}; USER_=${USER_%%@*}
DB=${URL##*/}
W=$PWD/.tmp/bench-$ROWS
rm -rf "$W"; mkdir -p "$W"
echo "== fixture: $ROWS records"
/usr/bin/time -f "gen-fixture: %e s, peak RSS %M KiB" "$BIN" migrate gen-fixture --out "$W/fixture" --rows "$ROWS" --invalid-share 0.01 >/dev/null
du -sh "$W/fixture/export.json"
echo "== tsunagu migrate run"
/usr/bin/time -f "migrate run: %e s wall, %U s user, %S s sys, peak RSS %M KiB" \
  "$BIN" migrate run --quiet --spec examples/migration/sales.toml --source "$W/fixture" \
  --target "$URL" --report "$W/report.json" --work-dir "$W/work"
python3 - "$W/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
written = sum(t["written"] for t in r["tables"].values())
read = sum(t["read"] for t in r["tables"].values())
print(f"end to end: {read} rows read, {written} written in {r['seconds']:.1f} s = {read / r['seconds']:,.0f} rows/s read, {written / r['seconds']:,.0f} rows/s loaded")
for name, t in r["tables"].items():
    print(f"  {name:<18} {t['written']:>10} rows  export {t['export_seconds']:6.1f} s  load {t['load_seconds']:6.1f} s")
PY
echo "== raw LOAD DATA of the same chunks (one connection per table, tables in sequence)"
M=(mariadb --no-defaults -h "${HOSTPORT%:*}" -P "${HOSTPORT#*:}" -u "$USER_" --local-infile=1 "$DB")
start=$(date +%s.%N); total=0
for dir in "$W"/work/chunks/*/; do
  t=$(basename "$dir")
  "${M[@]}" -e "DROP TABLE IF EXISTS raw_$t; CREATE TABLE raw_$t LIKE $t"
  sql=""
  for f in "$dir"*.csv; do
    sql+="LOAD DATA LOCAL INFILE '$f' INTO TABLE raw_$t CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n';"
  done
  "${M[@]}" -e "$sql"
  n=$("${M[@]}" -N -e "SELECT COUNT(*) FROM raw_$t"); total=$((total + n))
  "${M[@]}" -e "DROP TABLE raw_$t"
done
end=$(date +%s.%N)
python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); print(f'raw LOAD DATA: {int(sys.argv[3])} rows in {s:.1f} s = {int(sys.argv[3])/s:,.0f} rows/s')" "$start" "$end" "$total"
