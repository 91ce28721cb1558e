#!/usr/bin/env python3
"""Fetch a URL with aiohttp's client running on edgeloop.

    python examples/aiohttp_client.py http://127.0.0.1:8080/

Prints the status line, then the body (up to ``--max-bytes``).  Exit status 0 for a 2xx answer,
1 otherwise, 2 if the request failed.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

import aiohttp


async def fetch(url: str, timeout: float, max_bytes: int) -> int:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        async with session.get(url) as resp:
            body = await resp.content.read(max_bytes)
            print(f"HTTP {resp.status} {resp.reason}")
            sys.stdout.write(body.decode(resp.charset or "utf-8", errors="replace"))
            if body and not body.endswith(b"\n"):
                sys.stdout.write("\n")
            return 0 if 200 <= resp.status < 300 else 1


async def run(args: argparse.Namespace) -> int:
    try:
        return await fetch(args.url, args.timeout, args.max_bytes)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        print(f"request failed: {exc!r}", file=sys.stderr)
        return 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--max-bytes", type=int, default=1 << 20)
    parser.add_argument("--trigger", choices=["edge", "level"], default="edge")
    parser.add_argument("--loop", choices=["edgeloop", "asyncio"], default="edgeloop")
    args = parser.parse_args()
    if args.loop == "asyncio":
        sys.exit(asyncio.run(run(args)))
    import edgeloop
    sys.exit(edgeloop.run(run(args), trigger=args.trigger))


if __name__ == "__main__":
    main()
