#!/usr/bin/env python3
"""Prints two migration reports' figures side by side (rows/s end to end and of the
partition step, which reads the source) and whether both loaded the same rows with the
same checksums. usage: compare_reports.py DIR NAME... (reads DIR/NAME.json)"""
import json
import sys

w, names = sys.argv[1], sys.argv[2:]
reports = {n: json.load(open(f"{w}/{n}.json")) for n in names}
for name, r in reports.items():
    read = sum(t["read"] for t in r["tables"].values())
    written = sum(t["written"] for t in r["tables"].values())
    p = r["phases"]
    s, ps = r["seconds"], max(p["partition_seconds"], 1e-9)
    print(
        f"{name}: {read} rows read, {written} written in {s:.1f} s = {read / s:.0f} rows/s end to end; "
        f"partition step (reading the source) {ps:.1f} s = {read / ps:.0f} table rows/s; "
        f"export + load {p['transfer_seconds']:.1f} s; verified: {r['ok']}"
    )
tables = [{k: (t["written"], t["checksum"]) for k, t in r["tables"].items()} for r in reports.values()]
print("same rows and checksums in every database:", all(t == tables[0] for t in tables))
