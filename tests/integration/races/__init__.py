"""The races of PRODUCT §9 on PostgreSQL, each with two transactions held open at the chosen moment.

One side runs its use case inside a transaction the test keeps open (the use case joins it, see
``Database.run``); the other side starts on a second connection pool and must be seen waiting for
a row lock; then the first commits and the second finishes. Both orders of each pair are run:
whichever goes first, no link is left bound to no server, none of a closed request is queued
again, and ``active_tasks`` stays exact.
"""
