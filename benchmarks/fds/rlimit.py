"""Raising the open-descriptor limit so that N sockets fit in one process."""
from __future__ import annotations

import resource


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (and the hard limit too when allowed,
    e.g. as root, if ``wanted`` exceeds it).  Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
