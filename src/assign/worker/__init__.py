"""The runtime a tool server's author imports, so they write only the work::

    from assign.worker import Result, run_worker

    def post(link):  # or ``async def``
        url = publish(link["site_name"], link["username"], link["password"], link["about"])
        return Result(profile_url=url)

    run_worker("http://assign:8000", server_key, post)

It heartbeats, claims with ``wait_seconds`` up to its free slots (the server's ``max_threads``
unless ``concurrency`` says), runs handlers concurrently (sync ones in threads), reports results
in batches (``PUT /links/results``), retries on 503 and connection errors with back-off, and on
SIGTERM stops claiming, lets its handlers finish, reports their results, then exits. A handler
that raises reports a failed result with the exception as its ``error``; one returning None
reports ``completed``. ``assign worker MODULE:FUNCTION`` runs it from the command line.
"""

from assign.worker.runtime import Result, Tally, Worker, run_worker

__all__ = ["Result", "Tally", "Worker", "run_worker"]
