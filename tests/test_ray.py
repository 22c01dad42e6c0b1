"""The optimizer's independent tasks on Ray (router/ray_executor.py), on a real cluster.

The module starts a two-node Ray cluster on this machine (``ray start --head`` and a
second ``ray start --address``, one CPU each) and always stops it (``ray stop
--force``), then checks that no Ray process is left. On it:

- the independent sweep, the Lagrangian oracle in chunks and ``optimize`` give the
  same answer and bound through the in-process executor and through Ray;
- a worker killed (SIGKILL) during a solve: its task is retried, the answer is still
  feasible (the independent checker) and the bound still at most the optimum;
- ``omniroute solve DIR --workers 2`` (a local Ray runtime) and ``omniroute solve DIR``
  with ``RAY_ADDRESS`` (the cluster) in real subprocesses.

Skipped, with the reason, when Ray is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from router.checker import check, load_assignments
from router.problem import build_problem
from router.run import assignments_frame, solve_folder
from router.scenario import load_scenario
from solver.executor import InProcessExecutor
from solver.greedy import greedy_units
from solver.mip import MipParams, solve_mip
from solver.model import ModelInput, build_model
from solver.params import OptimizeParams
from solver.support_mip import lp_units
from tests.scarce import small_scarce_folder

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason="Ray is not installed (pip install 'omniroute[ray]')"
)

RAY = Path(sys.executable).with_name("ray")

BLOCKS_PATH = OptimizeParams(
    time_limit=30, rel_gap=1e-6, exact_orders=0, exact_candidates=0,
    joint_lp_colliding_share=0.0, exact_mip_columns=0, first_order_columns=10**9,
    support_block_orders=15, support_block_seconds=2,
)  # fmt: skip
"""Small scarce batches down the large-batch path: joint LP, then the support blocks."""


@pytest.fixture(scope="module")
def scarce_batches(tmp_path_factory):
    batches = []
    for seed in (1, 2):
        folder = small_scarce_folder(tmp_path_factory, seed)
        scenario = load_scenario(folder)
        problem = build_problem(scenario)
        model, _v, _keys, _rows = build_model(problem, ModelInput.whole(problem))
        optimum = solve_mip(model, MipParams(rel_gap=0.0, time_limit=60)).objective
        batches.append((folder, scenario, problem, optimum))
    return batches


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ray_processes() -> list[tuple[int, str]]:
    """(pid, command) of every Ray process on the machine."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if command.startswith("ray::") or "site-packages/ray/" in command:
            found.append((int(entry), command))
    return found


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster on this machine (its address); always stopped after."""
    # a short temp dir: Ray's socket paths must stay under 108 characters
    temp = tempfile.mkdtemp(prefix="omr-", dir="/tmp")
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    node = ["--num-cpus=1", "--object-store-memory=100000000", "--node-ip-address=127.0.0.1"]
    try:
        for command in (
            ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"],
            [f"--address=127.0.0.1:{port}"],
        ):
            started = subprocess.run(
                [RAY, "start", *command, *node, "--disable-usage-stats"],
                env=env, capture_output=True, text=True, timeout=180,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr[-2000:]
        with pytest.MonkeyPatch.context() as patch:
            # the driver (this process) joins without a token, like the nodes
            patch.setenv("RAY_AUTH_MODE", "disabled")
            patch.delenv("RAY_ADDRESS", raising=False)
            yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=180)
        shutil.rmtree(temp, ignore_errors=True)
        deadline = time.monotonic() + 20
        while _ray_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _ray_processes(), f"Ray processes left running: {_ray_processes()}"


@pytest.fixture(scope="module")
def on_cluster(cluster):
    from router.ray_executor import RayExecutor

    executor = RayExecutor(address=cluster)
    try:
        yield executor
    finally:
        executor.close()


def _clock():
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


def test_without_ray_the_error_names_the_extra(monkeypatch):
    from router.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(ImportError, match=r"install omniroute\[ray\]"):
        RayExecutor(workers=1)


@needs_ray
def test_the_cluster_has_two_nodes(on_cluster):
    stats = on_cluster.stats()
    assert stats["nodes"] == 2 and stats["workers"] == 2
    assert on_cluster.map(_scaled, 3, [1, 2, 5]) == [3, 6, 15]


def _scaled(factor, item):
    return factor * item


@needs_ray
def test_the_sweep_is_the_same_through_ray(on_cluster, scarce_batches):
    from solver.parallel_blocks import improve_in_parallel

    params = OptimizeParams(support_block_orders=15, support_block_seconds=10)
    for _folder, _scenario, problem, _optimum in scarce_batches:
        part = ModelInput.whole(problem)
        model, v, _keys, _rows = build_model(problem, part)
        lp = lp_units(problem, part, v, solve_mip(model, MipParams(relax=True)).x)
        start = greedy_units(problem)
        everyone = np.ones(problem.num_orders, dtype=bool)
        here, _ = improve_in_parallel(
            problem, start, lp, everyone, params, lambda: 0.0, 1e9, InProcessExecutor()
        )
        there, details = improve_in_parallel(
            problem, start, lp, everyone, params, lambda: 0.0, 1e9, on_cluster
        )
        assert details["improved"] > 0
        assert np.array_equal(here, there)


@needs_ray
def test_the_oracle_prices_the_same_through_ray(on_cluster, scarce_batches):
    from solver.parallel_pricing import PricingData, price_orders_with
    from solver.pricing import build_structure, price_orders

    rng = np.random.default_rng(3)
    for _folder, _scenario, problem, _optimum in scarce_batches:
        structure = build_structure(problem)
        data = PricingData(problem, structure)
        for _ in range(2):
            key = rng.exponential(8.0, structure.key_node.size)
            node = rng.exponential(2.0, problem.num_nodes)
            here = price_orders(problem, structure, key, node)
            there = price_orders_with(on_cluster, data, key, node)
            assert there.value == here.value
            assert np.array_equal(there.units, here.units)


@needs_ray
def test_optimize_gives_the_same_answer_and_bound_through_ray(on_cluster, scarce_batches):
    from solver.batch import optimize

    for _folder, scenario, problem, optimum in scarce_batches:
        here = optimize(problem, BLOCKS_PATH, _clock(), None, InProcessExecutor())
        tasks_before = on_cluster.tasks
        there = optimize(problem, BLOCKS_PATH, _clock(), None, on_cluster)
        assert there.stats["support_blocks"]["tasks"] > tasks_before
        assert there.stats["executor"]["executor"] == "ray"
        assert there.cost.total_cost == pytest.approx(here.cost.total_cost, rel=1e-9)
        assert there.lower_bound == pytest.approx(here.lower_bound, rel=1e-6)
        assert there.lower_bound <= optimum + 1e-6 <= there.cost.total_cost + 2e-6
        assert check(scenario, assignments_frame(problem, there.units)).feasible


@needs_ray
def test_solve_folder_passes_the_executor_through(on_cluster, scarce_batches, tmp_path):
    folder, _scenario, _problem, _optimum = scarce_batches[0]
    output = solve_folder(folder, tmp_path / "out", params=BLOCKS_PATH, executor=on_cluster)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["details"]["executor"]["executor"] == "ray"
    assert summary["details"]["support_blocks"]["tasks"] > 0
    assert output.result.lower_bound <= output.result.cost.total_cost


class _SlowTasks:
    """An executor whose every task first waits ``delay`` seconds (so that a test
    can catch one running)."""

    def __init__(self, inner, delay: float) -> None:
        self.inner, self.delay = inner, delay

    @property
    def workers(self) -> int:
        return self.inner.workers

    @property
    def name(self) -> str:
        return self.inner.name

    def map(self, fn, shared, items):
        return self.inner.map(functools.partial(_after, self.delay, fn), shared, items)

    def stats(self) -> dict:
        return self.inner.stats()


def _after(delay, fn, shared, item):
    time.sleep(delay)
    return fn(shared, item)


@needs_ray
def test_a_killed_worker_is_retried_and_the_answer_still_checks(on_cluster, scarce_batches):
    import ray.cloudpickle

    from router.ray_executor import TASK_NAME
    from solver.batch import optimize

    # this module is not importable on the workers: its helper travels by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    killed: list[int] = []
    done = threading.Event()

    def kill_one_running_task() -> None:
        # a worker running one of our tasks for a while (its task is under way)
        seen: dict[int, float] = {}
        while not done.is_set() and not killed:
            for pid, command in _ray_processes():
                if not command.startswith(f"ray::{TASK_NAME}"):
                    seen.pop(pid, None)
                elif time.monotonic() - seen.setdefault(pid, time.monotonic()) > 0.3:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    break
            time.sleep(0.05)

    _folder, scenario, problem, optimum = scarce_batches[0]
    retries_before = on_cluster.stats()["retries"]
    killer = threading.Thread(target=kill_one_running_task, daemon=True)
    killer.start()
    try:
        result = optimize(problem, BLOCKS_PATH, _clock(), None, _SlowTasks(on_cluster, 1.0))
    finally:
        done.set()
        killer.join()
    assert killed, "no task was seen running"
    assert result.stats["executor"]["retries"] > retries_before
    assert check(scenario, assignments_frame(problem, result.units)).feasible
    assert result.lower_bound <= optimum + 1e-6 <= result.cost.total_cost + 2e-6


@needs_ray
def test_cli_solve_with_local_workers(scarce_batches, tmp_path):
    folder, scenario, _problem, _optimum = scarce_batches[0]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    omniroute = Path(sys.executable).with_name("omniroute")
    out = tmp_path / "out"
    ran = subprocess.run(
        [omniroute, "solve", folder, "--out", out, "--workers", "2", "--time-limit", "30",
         "--json", "--quiet"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    summary = json.loads(ran.stdout)
    assert summary["details"]["executor"]["executor"] == "ray"
    assert summary["details"]["executor"]["workers"] == 2
    assert check(scenario, load_assignments(out / "assignments.csv")).feasible


@needs_ray
def test_cli_solve_on_the_cluster_from_ray_address(cluster, scarce_batches, tmp_path):
    folder, scenario, _problem, _optimum = scarce_batches[1]
    omniroute = Path(sys.executable).with_name("omniroute")
    out = tmp_path / "out"
    ran = subprocess.run(
        [omniroute, "solve", folder, "--out", out, "--time-limit", "30", "--json", "--quiet"],
        env={**os.environ, "RAY_ADDRESS": cluster}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    executor = json.loads(ran.stdout)["details"]["executor"]
    assert executor["address"] == cluster and executor["nodes"] == 2
    assert check(scenario, load_assignments(out / "assignments.csv")).feasible


@needs_ray
def test_cli_refuses_workers_with_an_address(tmp_path):
    omniroute = Path(sys.executable).with_name("omniroute")
    ran = subprocess.run(
        [omniroute, "solve", tmp_path, "--out", tmp_path / "out", "--workers", "2",
         "--ray-address", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 2
    assert "give one of them" in ran.stderr
