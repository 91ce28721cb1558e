"""Registers the ``conformance`` marker (deselect with ``pytest -m "not conformance"``)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "conformance: runs CPython's asyncio tests on edgeloop (minutes, subprocesses)")
