"""Work on the second core: answers computed in a forked child process.

HiGHS and PDLP hold Python's global lock while they run, so a thread would not
help: a long solve (the joint LP, the whole batch's MIP) runs in a forked child
instead, which sends each of its answers back through a pipe, while the caller
goes on with other work and asks for them when it needs them
(:meth:`InChild.result`). Where ``fork`` is unavailable or not wanted, the work
is done right away in this process: the same answers, only later.

The child ignores Ctrl-C (the parent owns the stop) and is killed when the
caller stops waiting or is done, so it never outlives the solve.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

PATIENCE = 30.0
"""Seconds past an answer's own time limit before the child is given up (HiGHS
and PDLP check their limits only now and then)."""


def can_fork() -> bool:
    """Whether this platform forks (else :class:`InChild` works in this process)."""
    return "fork" in multiprocessing.get_all_start_methods()


def stop_event():
    """An event a forked child sees set: the parent's way to end its work early."""
    return multiprocessing.get_context("fork").Event()


class InChild:
    """The answers of ``produce()`` (an iterable of picklable answers), computed in a
    forked child when ``background`` (else here, at once).

    ``patience[i]`` is how many seconds after the start answer ``i`` may take
    before the child is given up; an answer for which ``last(answer)`` holds
    ends the work early.
    """

    def __init__(
        self,
        produce: Callable[[], Iterable],
        patience: Sequence[float],
        background: bool,
        last: Callable[[Any], bool] = lambda _answer: False,
    ):
        self._answers: list = []
        self._process = None
        self._conn = None
        self._patience = list(patience)
        self._last = last
        self.background = background and can_fork()
        if not self.background:
            for answer in produce():
                self._answers.append(answer)
                if last(answer) or len(self._answers) >= len(self._patience):
                    break
            return
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child, args=(send, produce, len(self._patience), last), daemon=True
        )
        self._process.start()
        send.close()
        self._conn = receive
        self._started = time.perf_counter()
        self._received = 0

    @property
    def answers_left(self) -> int:
        """Answers still to come (0 once the last came or the child is gone)."""
        if not self.background:
            return len(self._answers)
        return 0 if self._conn is None else len(self._patience) - self._received

    def ready(self) -> bool:
        """Has the next answer come back (or was it computed here)?"""
        if not self.background or self._conn is None:
            return True
        try:
            return self._conn.poll(0)
        except (EOFError, OSError):
            return True

    def result(self, stop: Callable[[], bool] = lambda: False):
        """The next answer (``None`` if there is none, the child failed or
        ``stop()`` became true while waiting)."""
        if not self.background:
            return self._answers.pop(0) if self._answers else None
        if self._conn is None:
            return None
        patience = self._patience[min(self._received, len(self._patience) - 1)]
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
        if self._last(answer) or self._received >= len(self._patience):
            self.close()
        return answer

    def close(self) -> None:
        """Kill the child if it still runs (abandoned work) and release the pipe."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _child(send, produce, count: int, last) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        for sent, answer in enumerate(produce(), start=1):
            send.send_bytes(pickle.dumps(answer))
            if last(answer) or sent >= count:
                break
    except BaseException:  # the parent sees a closed pipe and goes on without it
        code = 1
    finally:
        send.close()
        os._exit(code)
