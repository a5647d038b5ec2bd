"""Every benchmark of bench/ in one run (``make bench``), then their figures against the targets.

Needs PostgreSQL (``ASSIGN_BENCH_POSTGRES_URL``, default ``postgresql://root@127.0.0.1:5432/postgres``)
and the ports 8101-8102 and 8310 on 127.0.0.1. Takes about ten minutes on 2 cores, plus about
fifteen for the dispatcher's (bench/dispatch.py).

Run: ``python bench/run_all.py [--batches N] [--requests N] [--rows N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import bulk_insert
import dispatch
import read_paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batches", type=int, default=20, help="bulk insert batches per path")
    parser.add_argument("--requests", type=int, default=300, help="timed GETs per endpoint")
    parser.add_argument("--rows", type=int, default=1_000_000, help="links of the large tables")
    args = parser.parse_args()
    started = time.perf_counter()
    inserts = asyncio.run(bulk_insert.main(args.batches, args.rows, 8101, keep=False))
    print()
    reads = asyncio.run(read_paths.main(args.requests, args.rows, 8102, keep=False))
    print()
    dispatcher = asyncio.run(dispatch.main(port=8310))
    print(f"\n== summary ({time.perf_counter() - started:.0f} s)")
    missed = 0
    for s in inserts:
        ok = s["ratio"] >= 0.6
        missed += not ok
        print(
            f"bulk insert, {s['label']}: HTTP {s['rate']['http']:,.0f} rows/s = {s['ratio']:.2f} x "
            f"raw COPY (target >= 0.60): {'meets' if ok else 'MISSES'}"
        )
    for r in reads:
        ok = r["p99"] < r["target"]
        missed += not ok
        print(
            f"{r['label']}: p50 {r['p50'] * 1000:.1f} ms, p99 {r['p99'] * 1000:.1f} ms "
            f"(target p99 < {r['target'] * 1000:.0f} ms): {'meets' if ok else 'MISSES'}"
        )
    for line, ok in dispatch.verdicts(dispatcher):
        missed += not ok
        print(line)
    print(f"{missed} figure(s) off target" if missed else "all figures on target")
    return 0  # figures are information, not a test verdict


if __name__ == "__main__":
    sys.exit(main())
