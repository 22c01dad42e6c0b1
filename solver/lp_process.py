"""The first-order LP on the second core while this one builds answers.

PDLP holds Python's global lock for its whole run, so a thread would not help:
the LP runs in a forked child process instead (:func:`start_first_order_lp`),
which sends its answer back through a pipe, and the caller goes on with work
that needs no LP (a flow, single-order moves) until it asks for the result
(:meth:`PendingLp.result`). Where ``fork`` is unavailable or not wanted, the LP
is solved right away in this process: the same answer, only later.

The child ignores Ctrl-C and SIGTERM (the parent owns the stop) and is killed
when the caller stops waiting, so it never outlives the solve.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time

from solver.first_order_lp import FirstOrderResult, solve_lp_first_order
from solver.mip import MipModel


class PendingLp:
    """A first-order LP being solved; :meth:`result` waits for it."""

    def __init__(self, model: MipModel, time_limit: float, rel_tol: float, background: bool):
        self._done: FirstOrderResult | None = None
        self._process = None
        self._conn = None
        self.background = background and "fork" in multiprocessing.get_all_start_methods()
        if not self.background:
            self._done = solve_lp_first_order(model, time_limit, rel_tol)
            return
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(send, model, time_limit, rel_tol), daemon=True
        )
        self._process.start()
        send.close()
        self._conn = receive
        self._time_limit = time_limit
        self._started = time.perf_counter()

    def ready(self) -> bool:
        """Has the answer come back (or was it solved here)?"""
        if not self.background or self._conn is None:
            return True
        try:
            return self._conn.poll(0)
        except (EOFError, OSError):
            return True

    def result(self, stop=lambda: False) -> FirstOrderResult | None:
        """The LP's answer (``None`` if the child failed or ``stop()`` became true)."""
        if not self.background or self._conn is None:
            return self._done
        patience = self._time_limit + 30.0  # PDLP checks its own limit; then it must send
        try:
            while not self._conn.poll(0.05):
                if stop() or time.perf_counter() - self._started > patience:
                    return None
                if self._process is not None and not self._process.is_alive():
                    if not self._conn.poll(0):
                        return None
                    break
            payload = self._conn.recv_bytes()
            self._done = pickle.loads(payload)
            return self._done
        except (EOFError, OSError):
            return None
        finally:
            self.close()

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
    model: MipModel, time_limit: float, rel_tol: float, background: bool = True
) -> PendingLp:
    """Start PDLP on ``model``'s LP (see :func:`solver.first_order_lp.solve_lp_first_order`)."""
    return PendingLp(model, time_limit, rel_tol, background)


def _child(send, model: MipModel, time_limit: float, rel_tol: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        send.send_bytes(pickle.dumps(solve_lp_first_order(model, time_limit, rel_tol)))
    except BaseException:  # the parent sees a closed pipe and goes on without it
        code = 1
    finally:
        send.close()
        os._exit(code)
