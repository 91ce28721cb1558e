"""Run your own pytest-asyncio (>= 1.4) test suite on edgeloop: copy this hook into conftest.py.

``pytest_asyncio_loop_factories`` returns ``{name: loop factory}``; every ``@pytest.mark.asyncio``
test is parametrized over those loops (``test_x[edgeloop]``, ``test_x[asyncio]``), and
``@pytest.mark.asyncio(loop_factories=["edgeloop"])`` picks some of them for one test.  Keep only
the ``"edgeloop"`` entry to run the whole suite on edgeloop alone.

This replaces the ``event_loop_policy`` fixture override of older pytest-asyncio versions (still
accepted, but deprecated, like event loop policies themselves from Python 3.14).
"""
import asyncio

import edgeloop


def pytest_asyncio_loop_factories(config, item):
    return {"edgeloop": edgeloop.new_event_loop, "asyncio": asyncio.new_event_loop}
