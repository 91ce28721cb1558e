"""The benchmark harness's reference subjects, ``raw-python`` and ``raw-c``: they build, start,
echo, serve connections that end in EOF, and show up in the report (echo cells only), and a
cell that fails is reported with its reason.  No timing is checked: the numbers depend on the
machine."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest

from benchmarks import report
from benchmarks.proc import REPO_ROOT, Pinning, build_c
from benchmarks.runner import Cell
from benchmarks.subjects import ServerSubject
from benchmarks.workloads import KIB, Workload

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the benchmarks run on Linux")


def _usable(subject: str) -> None:
    if subject == "raw-c":
        binary, reason = build_c("rawecho")
        if binary is None:
            pytest.skip(f"raw-c cannot be built here: {reason}")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("subject", ["raw-python", "raw-c"])
def test_reference_server_echoes(subject, transport, tmp_path):
    _usable(subject)
    subj = ServerSubject(subject, "protocol", transport, Pinning(None, None), tmp_path)
    try:
        subj.wait_ready()
        assert subj.snapshot() is None  # the reference servers keep no counters
        subj.warm_eof(False, 1024)  # connections that end in EOF: the server closes each
        # One round trip of a message several reads long (64 KiB per recv), sent from a thread
        # so that neither side's buffers can block the other.
        msg = bytes(range(256)) * 400
        with subj.connect() as sock:
            sender = threading.Thread(target=sock.sendall, args=(msg,))
            sender.start()
            got = bytearray()
            while len(got) < len(msg):
                chunk = sock.recv(65536)
                assert chunk, "the server closed before echoing everything"
                got += chunk
            sender.join()
        assert bytes(got) == msg
        assert subj.alive()
    finally:
        subj.stop()


def test_compare_reports_reference_subjects(tmp_path):
    """A tiny run: raw-python and raw-c are cells of the protocol echo workload with numbers,
    absent (not failed) from the streams and in-process ones, and the report has the ceiling
    table, for the streams cell too (with the ceilings of the protocol cell)."""
    have_c = build_c("rawecho")[0] is not None
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "benchmarks", "--quick", "--rounds", "1", "--duration", "0.2",
            "--warmup", "0.1", "--no-charts", "--loops", "asyncio,raw-python,raw-c",
            "-w", "tcp-protocol", "-w", "tcp-streams", "-w", "call_soon", "--out", str(out)]
    run = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=50)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((out / "compare.json").read_text())["results"]
    cells = {(r["workload"], r["loop"]): r for r in results}
    echo = "tcp-protocol 1KiB x10"
    for loop in ["asyncio", "raw-python"] + (["raw-c"] if have_c else []):
        assert cells[(echo, loop)]["error"] is None, cells[(echo, loop)]
        assert cells[(echo, loop)]["median"] > 0
    streams = "tcp-streams 1KiB x10"
    assert ("call_soon", "asyncio") in cells and (streams, "asyncio") in cells
    assert not [k for k in cells if k[0] in ("call_soon", streams) and k[1].startswith("raw-")]
    md = (out / "compare.md").read_text()
    assert "| vs raw-python | vs raw-c | ceilings from |" in md and report.CEILING_SENTENCE in md
    assert f"| {echo} | raw-python |" in md
    assert re.search(rf"\| {streams} \| asyncio \| [^|]+ \| req/s \| [\d.]+ \| [^|]+ \| {echo} \|",
                     md), md


def test_failed_cell_is_reported_with_its_reason():
    w = Workload("echo", "protocol", "unix", KIB, 10)
    ok = Cell(w, "raw-python", samples=[100.0, 120.0])
    bad = Cell(w, "rloop", error="SubjectError: EOF warm-up connection 1/3: ConnectionResetError")
    table = report.comparison_table([ok, bad])
    assert "| rloop | failed (see below) |" in table
    assert report.failures([ok, bad]) == (f"- {w.name} on rloop: SubjectError: EOF warm-up "
                                          "connection 1/3: ConnectionResetError")
    ceiling = report.ceiling_table([ok, bad])
    assert ceiling is not None and f"| {w.name} | rloop | failed |" in ceiling


def test_cpucost_reports_user_and_kernel_time_per_request():
    binary, reason = build_c("echoload")
    if binary is None:
        pytest.skip(f"the C echo client cannot be built here: {reason}")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpucost", "--rounds", "1", "--seconds", "0.3",
         "--loops", "raw-python,edge"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in re.finditer(r"^\| (\S+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out.stdout, re.M)}
    assert set(rows) == {"raw-python", "edge"}
    for user, kernel, total in rows.values():
        assert total > 0 and abs(user + kernel - total) < 0.02
