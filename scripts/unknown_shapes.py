#!/usr/bin/env python3
"""Writes the client histories of BENCHMARKS.md's "Checking histories"
section (our JSON schema, see consensus_actors::history) into a directory:

  unwritten-N.json   N writes with unknown outcome, then one completed read
                     of a value nobody wrote (not linearizable)
  timeouts-N.json    N clients each write a distinct value and never learn
                     the outcome (invoked 10 us apart); a reader reads every
                     15 us and sees the latest of the writes that took effect
                     (every other one): linearizable
  stale-N.json       the same, but a late read sees an earlier value again
                     (not linearizable)
  dup-N.json         N unknown writes of only two values, reads seeing them
                     alternate (linearizable; identical unknown commands)
  concurrent-N.json  N concurrent writes that all complete, then two
                     concurrent reads of two different values: exponential
                     for any search without a lucky order (budget stops it)

Usage: scripts/unknown_shapes.py DIR
"""
import json
import os
import sys


def op(i, client, command, invoke, outcome):
    return {"id": i, "client": client, "command": command, "invoke_us": invoke, "outcome": outcome}


def put(v):
    return {"Put": {"key": "x", "value": v}}


GET = {"Get": {"key": "x"}}
UNKNOWN = {"status": "unknown"}


def ok(output, at):
    return {"status": "ok", "output": output, "complete_us": at}


def unwritten(n):
    ops = [op(i, i, put(str(i)), i, UNKNOWN) for i in range(n)]
    ops.append(op(n, n, GET, n + 10, ok({"Value": "never"}, n + 20)))
    return ops


def timeouts(n, stale, values=None):
    ops, effects = [], []
    for i in range(n):
        v = f"v{i}" if values is None else values[i % len(values)]
        ops.append(op(len(ops), i, put(v), i * 10, UNKNOWN))
        if i % 2 == 0:
            effects.append((i * 10 + 5, v))
    seen, t = [], 0
    while t < n * 10 + 20:
        seen.append(next((v for at, v in reversed(effects) if at < t), None))
        t += 15
    if stale:
        seen[-1] = seen[(len(seen) - 1) // 2]
    for i, v in enumerate(seen):
        ops.append(op(len(ops), 100000, GET, i * 15, ok({"Value": v}, i * 15 + 1)))
    return ops


def concurrent(n):
    ops = [op(i, i, put(str(i)), 0, ok("Ok", 100)) for i in range(n)]
    ops.append(op(n, n, GET, 200, ok({"Value": "0"}, 300)))
    ops.append(op(n + 1, n + 1, GET, 200, ok({"Value": "1"}, 300)))
    return ops


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    files = {}
    for n in (20, 24, 64):
        files[f"unwritten-{n}"] = unwritten(n)
    for n in (24, 64):
        files[f"timeouts-{n}"] = timeouts(n, False)
        files[f"stale-{n}"] = timeouts(n, True)
        files[f"dup-{n}"] = timeouts(n, False, ["a", "b"])
    files["concurrent-24"] = concurrent(24)
    for name, ops in files.items():
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump({"operations": ops}, f)
    print("\n".join(sorted(files)))


if __name__ == "__main__":
    main()
