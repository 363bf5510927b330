#!/usr/bin/env python3
"""Derive big or reordered test histories from one `consensus simulate --history` file.

Used for the figures of BENCHMARKS.md ("Checking histories"):

  repeat IN OUT N        N copies of IN one after the other: copy k's values get
                         the suffix "~k", its times are shifted past copy k-1's
                         last event, and between copies one client puts a fresh
                         value and deletes it (both alone in time), so every copy
                         starts from an absent key as the first did. Linearizable
                         exactly when IN is.
  cut IN OUT N           the first N operations of IN in file order (IN lists
                         operations in invocation order, so this is a prefix in
                         time; operations invoked later are dropped).
  shuffle-ties IN OUT S  operations with equal invoke_us shuffled among
                         themselves (seed S) and ids renumbered in the new file
                         order: the same real-time order, a different file order.

Every output has one operation per line. The generated files are what the
checker reads; nothing here checks anything.
"""

import json
import random
import sys


def load(path):
    with open(path) as f:
        return json.load(f)["operations"]


def end_time(op):
    out = op["outcome"]
    return max(op["invoke_us"], out.get("complete_us", 0), out.get("gave_up_us", 0))


def write(path, ops_iter):
    with open(path, "w") as f:
        f.write('{"operations":[\n')
        first = True
        for op in ops_iter:
            if not first:
                f.write(",\n")
            first = False
            f.write(json.dumps(op, separators=(",", ":")))
        f.write("\n]}\n")


def rename(value, k):
    return None if value is None else f"{value}~{k}"


def shifted(op, k, offset, new_id):
    """A copy of op for copy k: values renamed, times shifted, id new."""
    op = json.loads(json.dumps(op))
    op["id"] = new_id
    op["invoke_us"] += offset
    cmd = op["command"]
    if isinstance(cmd, dict):
        (name, args), = cmd.items()
        if name == "Put":
            args["value"] = rename(args["value"], k)
        elif name == "Cas":
            args["expected"] = rename(args["expected"], k)
            args["new"] = rename(args["new"], k)
    out = op["outcome"]
    for field in ("complete_us", "gave_up_us"):
        if field in out:
            out[field] += offset
    output = out.get("output")
    if isinstance(output, dict):
        (name, arg), = output.items()
        if name in ("Value", "CasFailed"):
            output[name] = rename(arg, k)
    return op


def repeat(inp, outp, n):
    ops = load(inp)
    keys = sorted({next(iter(op["command"].values()))["key"]
                   for op in ops if isinstance(op["command"], dict)})
    span = max(end_time(op) for op in ops) + 1
    client = max(op["client"] for op in ops) + 1

    def generate():
        next_id = 0
        offset = 0
        for k in range(n):
            if k > 0:
                # Reset every key to absent, alone in time.
                for key in keys:
                    for cmd, output in (({"Put": {"key": key, "value": f"reset~{k}"}}, "Ok"),
                                        ({"Delete": {"key": key}}, {"Deleted": True})):
                        yield {"id": next_id, "client": client, "command": cmd,
                               "invoke_us": offset,
                               "outcome": {"status": "ok", "output": output,
                                           "complete_us": offset + 1}}
                        next_id += 1
                        offset += 2
            for op in ops:
                yield shifted(op, k, offset, next_id)
                next_id += 1
            offset += span

    write(outp, generate())


def cut(inp, outp, n):
    write(outp, load(inp)[:n])


def shuffle_ties(inp, outp, seed):
    ops = load(inp)
    rng = random.Random(seed)
    ops.sort(key=lambda op: op["invoke_us"])
    out = []
    i = 0
    while i < len(ops):
        j = i
        while j < len(ops) and ops[j]["invoke_us"] == ops[i]["invoke_us"]:
            j += 1
        tie = ops[i:j]
        rng.shuffle(tie)
        out.extend(tie)
        i = j
    for new_id, op in enumerate(out):
        op["id"] = new_id
    write(outp, out)


def main(argv):
    if len(argv) != 5 or argv[1] not in ("repeat", "cut", "shuffle-ties"):
        sys.stderr.write(__doc__)
        return 2
    command, inp, outp, arg = argv[1], argv[2], argv[3], int(argv[4])
    {"repeat": repeat, "cut": cut, "shuffle-ties": shuffle_ties}[command](inp, outp, arg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
