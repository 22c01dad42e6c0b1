"""Ctrl-C (SIGINT) or SIGTERM during ``omniroute solve`` writes the best answer so far.

A real ``omniroute solve`` process routes the bundled 2,000-order scenario with
no gap tolerance (it cannot finish within seconds); once its signal handlers are
installed (read from /proc, so the signal never arrives before them), it gets
the signal. The answer must be written, checked by ``omniroute check``, with
status ``interrupted``, a lower bound, and exit code 128 + the signal number.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from router.checker import check as check_answer
from router.checker import load_assignments
from router.scenario import load_scenario
from tests.test_cli import COMMAND, ROOT, omniroute

CN_2000 = ROOT / "fixtures" / "cn-2000"


def _catches(pid: int, signum: int) -> bool:
    """Does process ``pid`` have a handler installed for ``signum`` (Linux /proc)?"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _solve_and_signal(out: Path, signum: int) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        [
            *COMMAND, "solve", str(CN_2000), "--out", str(out), "--json",
            "--gap", "0", "--time-limit", "120",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # SIGTERM is caught only while the solve runs (SIGINT always is, by Python).
        deadline = time.monotonic() + 60
        while not _catches(process.pid, signal.SIGTERM):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the solve never installed its handlers"
            time.sleep(0.05)
        time.sleep(2.0)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_solve_writes_the_best_answer_so_far(tmp_path, signum):
    out = tmp_path / "out"
    run = _solve_and_signal(out, signum)
    assert run.returncode == 128 + signum, run.stderr
    assert "Traceback" not in run.stderr
    assert f"{signal.Signals(signum).name} received" in run.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert summary == json.loads(run.stdout)
    assert summary["status"] == "interrupted"
    assert summary["details"]["stopped_by"] == signal.Signals(signum).name
    assert summary["lower_bound"] is not None
    assert summary["lower_bound"] <= summary["total_cost"]
    assert summary["solve_seconds"] < 60

    check = omniroute("check", CN_2000, out / "assignments.csv")
    assert check.returncode == 0, check.stdout + check.stderr
    report = check_answer(load_scenario(CN_2000), load_assignments(out / "assignments.csv"))
    assert report.feasible
    assert report.total_cost == pytest.approx(summary["total_cost"], abs=1e-5)
