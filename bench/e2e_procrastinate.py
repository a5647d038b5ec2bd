"""procrastinate (``pip install .[bench]``) on the same PostgreSQL, for context: the same
number of no-op jobs deferred in batches, then worked through."""

from __future__ import annotations

import argparse
import os
import time

import common
from e2e_data import Run


async def procrastinate_run(name: str, concurrency: int, args: argparse.Namespace) -> Run:
    import procrastinate

    run = Run(name, args.links)
    async with common.scratch_database(f"assign_bench_pq_{os.getpid()}") as url:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

        @app.task(name="noop")
        async def noop() -> None:
            return None

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            for start in range(0, args.links, 5000):
                await noop.batch_defer_async(*({} for _ in range(min(5000, args.links - start))))
            started = time.perf_counter()
            await app.run_worker_async(
                concurrency=concurrency,
                wait=False,
                install_signal_handlers=False,
                delete_jobs="never",
            )
            run.seconds = time.perf_counter() - started
    return run
