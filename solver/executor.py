"""Where independent work runs: the execution seam of the solver.

Some steps of the batch method are many independent tasks, each a pure function
of numpy arrays (a geographic block's MIP at the global prices, the pricing of a
chunk of orders). How they run is the caller's choice: in this process, one after
the other (:class:`InProcessExecutor`, the default), or on the workers of a
cluster (``router.ray_executor.RayExecutor``). The solver only sees this
protocol, never the engine behind it, so it stays pure and gives the same answer
either way.

A task is ``fn(shared, item)``: ``shared`` is the large read-only data every task
reads (the prepared problem, the incumbent), sent once per map; ``item`` is the
task's own small input. Shared data never changes in place (an executor may
keep its copy while the same object is passed again, map after map). ``fn`` must be a module-level function (it travels by
reference) and must build its solver objects itself: HiGHS models do not pickle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Executor(Protocol):
    """Runs independent tasks and returns their results in item order."""

    tasks: int
    """Tasks done so far."""

    @property
    def workers(self) -> int:
        """How many tasks may run at once (the solver sizes time budgets by it)."""
        ...

    @property
    def name(self) -> str:
        """What runs the tasks, for the result's details (``in-process``, ``ray``)."""
        ...

    def map(
        self, fn: Callable[[Any, Item], Result], shared: Any, items: Sequence[Item]
    ) -> list[Result]:
        """``[fn(shared, item) for item in items]``, possibly elsewhere and at once."""
        ...

    def stats(self) -> dict:
        """Tasks run and retried so far (plain numbers, for the result's details)."""
        ...


class InProcessExecutor:
    """Every task in this process, one after the other: the reference executor."""

    def __init__(self) -> None:
        self.tasks = 0

    @property
    def workers(self) -> int:
        return 1

    @property
    def name(self) -> str:
        return "in-process"

    def map(
        self, fn: Callable[[Any, Item], Result], shared: Any, items: Sequence[Item]
    ) -> list[Result]:
        results = []
        for item in items:
            results.append(fn(shared, item))
            self.tasks += 1
        return results

    def stats(self) -> dict:
        return {"executor": self.name, "workers": self.workers, "tasks": self.tasks, "retries": 0}
