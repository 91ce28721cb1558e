"""edgeloop benchmarks: a side-by-side comparison of asyncio event loops, and the N-descriptor study.

``python -m benchmarks`` runs the loop comparison (see :mod:`benchmarks.cli`); ``python -m benchmarks
fds`` runs the select/poll/epoll study of the seed article (see :mod:`benchmarks.fds`).  Everything
here uses the standard library only; matplotlib is used for charts when it is installed.
"""
