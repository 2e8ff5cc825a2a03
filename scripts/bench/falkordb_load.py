#!/usr/bin/env python3
"""Loads an APOC JSON-lines export (as `tsunagu migrate gen-fixture` writes it) into a
FalkorDB graph over its own protocol (RESP, `GRAPH.QUERY`), so that the Bolt source can be
measured on the same data as the export file.

Nodes are created in file order, which in a fresh graph gives them the export's ids when
those are 0, 1, 2, ... (the fixture's are: every node id below the first relationship's);
relationships are created between nodes found by id. Relationships whose end is not a
node (the fixture's dangling ones) cannot exist in a graph and are skipped (counted), so
use a fixture made with `--invalid-share 0` to compare both sources row for row.

RESP, not Bolt: FalkorDB 4.16 stops answering once a Bolt client has closed its
connections, and does not answer Bolt writes that take parameters.

usage: falkordb_load.py EXPORT_JSON PORT GRAPH [BATCH]
"""

import json
import sys
import time

import redis


def literal(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, list):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"`{k}`: {literal(x)}" for k, x in v.items()) + "}"
    raise ValueError(f"unsupported value {v!r}")


def main():
    path, port, graph = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=None)
    started = time.time()
    nodes = rels = skipped = 0
    expected_id = 0
    pending = []
    pending_key = None

    def flush():
        nonlocal pending, pending_key
        if not pending:
            return
        kind, name = pending_key
        rows = "[" + ", ".join(pending) + "]"
        if kind == "node":
            q = f"CYPHER rows={rows} UNWIND $rows AS r CREATE (n:`{name}`) SET n = r"
        else:
            q = (
                # Ids bound with WITH first: FalkorDB then seeks both nodes by id
                # (NodeByIdSeek); `MATCH (a) WHERE id(a) = r[0]` scans every node.
                f"CYPHER rows={rows} UNWIND $rows AS r WITH r[0] AS s, r[1] AS t, r[2] AS p "
                f"MATCH (a), (b) WHERE id(a) = s AND id(b) = t CREATE (a)-[e:`{name}`]->(b) SET e = p"
            )
        r.execute_command("GRAPH.QUERY", graph, q)
        pending = []

    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec["type"] == "node":
                if int(rec["id"]) != expected_id:
                    sys.exit(f"node ids must be 0, 1, 2, ... in file order; found {rec['id']} for {expected_id}")
                expected_id += 1
                key = ("node", rec["labels"][0])
                row = literal({k: v for k, v in rec["properties"].items() if v is not None})
                nodes += 1
            else:
                s, e = int(rec["start"]["id"]), int(rec["end"]["id"])
                if s >= expected_id or e >= expected_id:
                    skipped += 1
                    continue
                key = ("rel", rec["label"])
                row = f"[{s}, {e}, {literal(rec['properties'])}]"
                rels += 1
            if key != pending_key or len(pending) >= batch:
                flush()
                pending_key = key
            pending.append(row)
    flush()
    seconds = time.time() - started
    print(
        f"loaded {nodes} nodes and {rels} relationships in {seconds:.1f} s"
        f" ({(nodes + rels) / max(seconds, 1e-9):.0f} records/s); {skipped} dangling relationships skipped",
        flush=True,
    )


if __name__ == "__main__":
    main()
