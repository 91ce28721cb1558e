"""Entry point: ``python -m tests.conformance`` (see :mod:`tests.conformance.cli`)."""
import sys

from .cli import main

sys.exit(main())
