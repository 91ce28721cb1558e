"""Run CPython's loop-generic asyncio tests (``test.test_asyncio``) against edgeloop.

The tests are imported from the running interpreter, never copied.  Each test module runs in a
child process (see :mod:`tests.conformance.child`) with edgeloop substituted for the stdlib loop,
and the parent (:mod:`tests.conformance.driver`) records hangs and crashes as failures and resumes
the module after them.  ``python -m tests.conformance --help`` lists the options.
"""
