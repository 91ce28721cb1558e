"""Entry point: ``python -m benchmarks [options]`` compares loops; ``python -m benchmarks fds``
runs the N-descriptor study."""
from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "fds":
        from benchmarks.fds.cli import main as fds_main
        return fds_main(argv[1:])
    if argv and argv[0] == "compare":
        argv = argv[1:]
    from benchmarks.compare import main as compare_main
    return compare_main(argv)


if __name__ == "__main__":
    sys.exit(main())
