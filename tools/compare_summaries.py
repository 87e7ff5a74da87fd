"""Compare the result rows (and findings) of two report summaries, timings aside.

    python tools/compare_summaries.py OLD/summary.json NEW/summary.json

Exit 0 when every experiment has the same rows and the same finding; otherwise print
the first differences and exit 1. Used to show that a refactoring changed no result:
run the smoke report before and after on the same machine (same CPU: training is
bit-identical there, not across CPU types) and compare.
"""

from __future__ import annotations

import json
import re
import sys

_TIMING = re.compile(r"(seconds|_s$|per_s|time|latency|created)")


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not _TIMING.search(k)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def compare(old: dict, new: dict) -> list[str]:
    problems = []
    for exp in sorted(set(old["experiments"]) | set(new["experiments"])):
        a, b = old["experiments"].get(exp), new["experiments"].get(exp)
        if a is None or b is None:
            problems.append(f"{exp}: only in {'new' if a is None else 'old'}")
            continue
        ra, rb = _clean(a["rows"]), _clean(b["rows"])
        if len(ra) != len(rb):
            problems.append(f"{exp}: {len(ra)} rows before, {len(rb)} after")
        key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
        only_a = sorted(map(key, ra), key=str)
        only_b = sorted(map(key, rb), key=str)
        diff = [x for x in only_a if x not in set(only_b)][:3]
        if diff:
            problems.append(f"{exp}: rows differ, e.g. before {diff[0][:300]}")
        if re.sub(r"\d+\.\d+ s\b", "", a["finding"]) != re.sub(r"\d+\.\d+ s\b", "", b["finding"]):
            problems.append(f"{exp}: finding differs:\n  before: {a['finding'][:400]}\n  after:  {b['finding'][:400]}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, new = (json.loads(open(p).read()) for p in argv)
    problems = compare(old, new)
    for p in problems:
        print(p)
    n = sum(len(e["rows"]) for e in new["experiments"].values())
    print("identical" if not problems else f"{len(problems)} difference(s)", f"({n} rows)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
