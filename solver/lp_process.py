"""The first-order LP on the second core while this one builds answers.

PDLP holds Python's global lock for its whole run, so a thread would not help:
the LP runs in a forked child process instead (:func:`start_first_order_lp`),
which sends its answer back through a pipe, and the caller goes on with work
that needs no LP (a flow, single-order moves) until it asks for the result
(:meth:`PendingLp.result`). Where ``fork`` is unavailable or not wanted, the LP
is solved right away in this process: the same answer, only later.

The LP may be solved in *legs*: the child sends the answer of each leg, then
goes on from its iterates (PDLP warm-started) for the next, unless it has
converged; the caller uses an early answer while a better one is computed.

The child ignores Ctrl-C and SIGTERM (the parent owns the stop) and is killed
when the caller stops waiting or is done, so it never outlives the solve.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Sequence

from solver.first_order_lp import FirstOrderResult, solve_lp_first_order
from solver.mip import MipModel


class PendingLp:
    """A first-order LP being solved; :meth:`result` waits for its next leg."""

    def __init__(self, model: MipModel, legs: Sequence[float], rel_tol: float, background: bool):
        self._answers: list[FirstOrderResult] = []
        self._process = None
        self._conn = None
        self._legs = list(legs)
        self.background = background and "fork" in multiprocessing.get_all_start_methods()
        if not self.background:
            answer = None
            for seconds in self._legs:
                answer = solve_lp_first_order(model, seconds, rel_tol, start=answer)
                self._answers.append(answer)
                if answer.converged:
                    break
            return
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(send, model, self._legs, rel_tol), daemon=True
        )
        self._process.start()
        send.close()
        self._conn = receive
        self._started = time.perf_counter()
        self._received = 0

    @property
    def legs_left(self) -> int:
        """Answers still to come (0 once the LP converged or the child is gone)."""
        if not self.background:
            return len(self._answers)
        return 0 if self._conn is None else len(self._legs) - self._received

    def ready(self) -> bool:
        """Has the next answer come back (or was it solved here)?"""
        if not self.background or self._conn is None:
            return True
        try:
            return self._conn.poll(0)
        except (EOFError, OSError):
            return True

    def result(self, stop=lambda: False) -> FirstOrderResult | None:
        """The next leg's answer (``None`` if there is none, the child failed or
        ``stop()`` became true)."""
        if not self.background:
            return self._answers.pop(0) if self._answers else None
        if self._conn is None:
            return None
        # PDLP checks its own limit now and then; then the child must send
        patience = sum(self._legs[: self._received + 1]) + 30.0
        try:
            while not self._conn.poll(0.05):
                if stop() or time.perf_counter() - self._started > patience:
                    self.close()
                    return None
                if self._process is not None and not self._process.is_alive():
                    if not self._conn.poll(0):
                        self.close()
                        return None
                    break
            answer = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            self.close()
            return None
        self._received += 1
        if answer.converged or self._received >= len(self._legs):
            self.close()
        return answer

    def close(self) -> None:
        """Kill the child if it still runs (an abandoned LP) and release the pipe."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def start_first_order_lp(
    model: MipModel,
    legs: float | Sequence[float],
    rel_tol: float,
    background: bool = True,
) -> PendingLp:
    """Start PDLP on ``model``'s LP (see :func:`solver.first_order_lp.solve_lp_first_order`)
    for ``legs`` seconds (one number, or one per leg)."""
    return PendingLp(model, [legs] if isinstance(legs, int | float) else legs, rel_tol, background)


def _child(send, model: MipModel, legs: list[float], rel_tol: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        answer = None
        for seconds in legs:
            answer = solve_lp_first_order(model, seconds, rel_tol, start=answer)
            send.send_bytes(pickle.dumps(answer))
            if answer.converged:
                break
    except BaseException:  # the parent sees a closed pipe and goes on without it
        code = 1
    finally:
        send.close()
        os._exit(code)
