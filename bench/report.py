#!/usr/bin/env python3
"""report.py RESULTS.jsonl [more.jsonl ...] -- markdown tables of medians.

First a comparison table (median wall seconds per tool, and idlewild's ratio to
mbsync), then the full table: wall (min-max), CPU, peak RSS, Dovecot CPU, CPU of
other processes, bytes on the wire (client->server / server->client, from
Dovecot's per-session in=/out= counters) and correctness."""
import json
import statistics
import sys
from collections import OrderedDict

STEP_ORDER = ["initial", "noop", "server1pct", "local1pct"]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=2):
    return "—" if x is None else ("%.*f" % (nd, x))


def main():
    rows = []
    for p in sys.argv[1:]:
        with open(p) as fh:
            rows += [json.loads(l) for l in fh if l.strip()]
    groups = OrderedDict()
    for r in rows:
        groups.setdefault((r["scenario"], r["tool"], r["size"], r["step"]), []).append(r)

    def key(k):
        sc, tool, size, step = k
        return (sc != "base", sc, size, tool, STEP_ORDER.index(step) if step in STEP_ORDER else 99)

    tools = []
    for r in rows:
        if r["tool"] not in tools:
            tools.append(r["tool"])
    order = [t for t in ("idlewild", "mbsync", "offlineimap3", "interimap") if t in tools]
    order += [t for t in tools if t not in order]
    cells = OrderedDict()
    for k in sorted(groups, key=key):
        cells.setdefault((k[0], k[2], k[3]), {})[k[1]] = med([r["wall_s"] for r in groups[k]])
    ratio = "idlewild" in order and "mbsync" in order
    print("| scenario | msgs | step | " + " | ".join(order) + (" | idlewild / mbsync |" if ratio else " |"))
    print("|---|---:|---|" + "---:|" * len(order) + ("---:|" if ratio else ""))
    for (sc, size, step), c in cells.items():
        line = "| %s | %d | %s | " % (sc, size, step) + " | ".join(fmt(c.get(t)) for t in order)
        if ratio:
            i, m = c.get("idlewild"), c.get("mbsync")
            line += " | " + ("%.2fx" % (i / m) if i is not None and m else "—")
        print(line + " |")
    print()
    print("| scenario | tool | msgs | step | n | wall s | CPU s (user+sys) | peak RSS MB | server CPU s | other CPU s | wire KB c->s / s->c | correct |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for k in sorted(groups, key=key):
        g = groups[k]
        sc, tool, size, step = k
        ok = sum(1 for r in g if r.get("correct"))
        wall = [r["wall_s"] for r in g]
        spread = "" if len(g) < 2 else " (%s–%s)" % (fmt(min(wall)), fmt(max(wall)))
        wi, wo = med([r.get("wire_in_bytes") for r in g]), med([r.get("wire_out_bytes") for r in g])
        wire = "—" if wi is None else "%.1f / %.1f" % (wi / 1024, wo / 1024)
        print("| %s | %s | %d | %s | %d | %s%s | %s | %s | %s | %s | %s | %s |" % (
            sc, tool, size, step, len(g), fmt(med(wall)), spread, fmt(med([r["cpu_s"] for r in g])),
            fmt(med([r["maxrss_mb"] for r in g]), 1), fmt(med([r.get("server_cpu_s") for r in g])), fmt(med([r.get("bg_cpu_s") for r in g])), wire,
            "yes" if ok == len(g) else "NO (%d/%d ok)" % (ok, len(g))))
    bad = [r for r in rows if not r.get("correct")]
    if bad:
        print("\nIncorrect / failed steps:\n")
        for r in bad:
            print("- %s %s %d %s #%d rc=%s: %s" % (r["scenario"], r["tool"], r["size"], r["step"],
                                                 r["rep"], r["rc"], r.get("verify_error")))


if __name__ == "__main__":
    main()
