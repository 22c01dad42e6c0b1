"""The solver's independent tasks on Ray: a local runtime, or a cluster one joins.

:class:`RayExecutor` is an executor of :mod:`solver.executor`: the solver hands
it a module-level task function, the large read-only data every task reads, and
the tasks' own inputs; it puts the shared data in Ray's object store once per
map, or once for as long as the same object is passed again (numpy arrays are
read there without a copy), runs one Ray task per input and returns the results
in input order. A task whose worker dies (a killed
process, a lost node) is run again, up to ``max_retries`` times; the answers
are the same, since tasks are pure. Ray is an optional extra
(``pip install 'omniroute[ray]'``) and is imported only here, only when used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

RAY_MISSING = "Ray is not installed: install omniroute[ray] (pip install 'omniroute[ray]')"

TASK_NAME = "omniroute_task"
"""Ray names a worker process ``ray::omniroute_task`` while it runs one of our tasks."""


def import_ray():
    """The ``ray`` module, or an ImportError that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(RAY_MISSING) from exc
    return ray


class RayExecutor:
    """Tasks on a Ray cluster: the one at ``address``, else a local runtime.

    Parameters
    ----------
    address
        A running cluster to join (``ray start --head`` prints it; ``auto`` finds
        the one on this machine); default: ``RAY_ADDRESS`` if set.
    workers
        CPUs of the local runtime started when there is no address (default: all
        of this machine's); not allowed with an address (the cluster has its own).
    object_store_memory
        Bytes of the local runtime's object store (shared memory); ignored when
        joining a cluster, whose nodes chose theirs at ``ray start``.
    max_retries
        Times a task whose worker died is run again.

    Use it as a context manager, or call :meth:`close`: it shuts down the local
    runtime it started, or leaves the cluster it joined (never stops the cluster).
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        *,
        object_store_memory: int = 512 * 2**20,
        max_retries: int = 3,
    ) -> None:
        ray = import_ray()
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address is not None and workers is not None:
            raise ValueError(
                f"workers={workers} starts a local Ray runtime, but a cluster address is given "
                f"({address!r}, from the argument or RAY_ADDRESS): pass one or the other"
            )
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            common = {"logging_level": logging.WARNING, "log_to_driver": False}
            if address is not None:
                ray.init(address=address, **common)
            else:
                # "local": a new runtime even if a cluster runs on this machine
                ray.init(
                    address="local",
                    num_cpus=workers or os.cpu_count() or 1,
                    object_store_memory=object_store_memory,
                    include_dashboard=False,
                    **common,
                )
        self.address = address
        self._task = ray.remote(max_retries=max_retries)(_run_task).options(name=TASK_NAME)
        self._ledger = ray.remote(num_cpus=0)(_Ledger).remote()
        self._maps = 0
        self._shared: Any = None
        self._shared_ref: Any = None
        self.tasks = 0

    @property
    def workers(self) -> int:
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    @property
    def name(self) -> str:
        return "ray"

    def map(self, fn: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]) -> list[Any]:
        """``[fn(shared, item) for item in items]`` as Ray tasks, ``shared`` put once."""
        if not items:
            return []
        ray = self._ray
        self._maps += 1
        # The same shared object again (the pricing data of a solve, map after
        # map): its copy in the object store is reused, not sent again.
        if shared is not self._shared:
            self._shared, self._shared_ref = shared, ray.put(shared)
        shared_ref = self._shared_ref
        refs = [
            self._task.remote(fn, shared_ref, item, self._ledger, (self._maps, index))
            for index, item in enumerate(items)
        ]
        results = ray.get(refs)
        self.tasks += len(items)
        return results

    def stats(self) -> dict:
        """Tasks done, and how many runs were retries: a task whose worker died after
        it had begun (it notes its start in a ledger actor) and that ran again. A
        worker lost before its task noted the start is retried all the same, but
        not counted."""
        starts, distinct = self._ray.get(self._ledger.counts.remote())
        return {
            "executor": self.name,
            "address": self.address or "local",
            "workers": self.workers,
            "nodes": sum(1 for node in self._ray.nodes() if node.get("Alive")),
            "tasks": self.tasks,
            "retries": starts - distinct,
        }

    def close(self) -> None:
        """Shut down the local runtime this started, or leave the cluster it joined."""
        self._shared = self._shared_ref = None
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run_task(fn, shared, item, ledger, key):
    """One task on a worker: noted in the ledger (so that a re-run shows as a retry),
    then ``fn(shared, item)``."""
    import ray

    ray.get(ledger.started.remote(key))
    return fn(shared, item)


class _Ledger:
    """An actor that counts task starts: a retried task starts twice."""

    def __init__(self) -> None:
        self.starts = 0
        self.keys: set = set()

    def started(self, key) -> None:
        self.starts += 1
        self.keys.add(tuple(key))

    def counts(self) -> tuple[int, int]:
        return self.starts, len(self.keys)
