"""The N-descriptor study of the seed article: select, poll and epoll as the watched set grows.

A UDP echo server runs in its own process (pinned to one CPU); the client (pinned to the other)
opens ``N`` UDP sockets, all watched by the poller under test, of which ``max(10, 10% of N)`` are
active (``--long``: 90%).  One round sends one request on every active socket and waits, through
the poller, until every reply has been read; ``W`` warm-up rounds are run first and not counted,
then ``R`` rounds are measured.  Socket set-up is not counted.  The sample of a round is its wall
time divided by the number of active sockets (time per request); the mean and the Bessel-corrected
standard deviation over the rounds come from Welford's algorithm (:class:`benchmarks.stats.Welford`).

Pollers are measured two ways: raw (``select`` through libc with a bitmap as large as needed, as
the article did past FD_SETSIZE; ``select.poll``; ``select.epoll`` level- and edge-triggered) and
as edgeloop's backends (``edgeloop.new_event_loop(backend=..., trigger=...)`` with ``add_reader``
per socket).  The Kerrisk-style table times monitoring calls with one ready descriptor among N.
"""
