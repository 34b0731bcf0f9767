"""One device, many requests: a bounded first-come queue with cancellation.

Jobs run one at a time on one worker thread (the device is not shared); up
to `max_waiting` more wait behind the running one, and a job past that is
refused (`Busy`). Any job can be cancelled at any time: a waiting one never
starts, a running one stops at its next chunk (the `on_chunk` it was given
raises `Cancelled`), and its future is answered at once either way, so no
caller waits for a job it gave up. `stop()` cancels everything, for a server
that is shutting down.

`status(ticket)` tells a caller where its job stands: its place in the
queue and an estimate of the wait (from the seconds per character the
finished jobs took), or how far it has run and whether it runs a shape no
job has run before (a first request of a new size compiles).
"""

import collections
import concurrent.futures
import dataclasses
import threading
import time
from typing import Any, Callable, Hashable


class Cancelled(Exception):
  """The job's caller left, or the server is stopping."""


class Busy(Exception):
  """The queue is full."""


@dataclasses.dataclass(eq=False)
class Job:
  """run(on_chunk) does the work, calling on_chunk(characters_done) between
  device calls; work: characters drawn in all (for the wait estimate);
  length: characters per candidate (for the progress); shape: what a
  compiled program is keyed by."""
  run: Callable[[Callable[[int], None]], Any]
  work: int
  length: int
  shape: Hashable
  ticket: str | None = None
  future: concurrent.futures.Future = dataclasses.field(
      default_factory=concurrent.futures.Future)
  cancelled: threading.Event = dataclasses.field(
      default_factory=threading.Event)
  done: int = 0
  compiling: bool = False

  def _answer(self, result: Any = None, error: BaseException | None = None):
    try:
      if error is None:
        self.future.set_result(result)
      else:
        self.future.set_exception(error)
    except concurrent.futures.InvalidStateError:
      pass  # Already answered (cancelled while it finished).


class WorkQueue:
  """Runs `Job`s one at a time on a daemon thread; see the module doc."""

  def __init__(self, max_waiting: int = 16,
               compiled: tuple[Hashable, ...] = ()):
    self.max_waiting = max_waiting
    self.compiled = set(compiled)  # Shapes some job has run.
    self.seconds_per_char: float | None = None
    self._waiting: collections.deque[Job] = collections.deque()
    self._running: Job | None = None
    self._tickets: dict[str, Job] = {}
    self._stopped = False
    self._cond = threading.Condition()
    self._thread = threading.Thread(target=self._serve, daemon=True,
                                    name='device-queue')
    self._thread.start()

  def submit(self, job: Job) -> Job:
    """Queues `job`; raises `Busy` when max_waiting jobs already wait, and
    `Cancelled` after `stop()`."""
    with self._cond:
      if self._stopped:
        raise Cancelled('The server is stopping.')
      if len(self._waiting) >= self.max_waiting:
        raise Busy(f'The server is busy: {len(self._waiting)} requests are '
                   'waiting already. Try again in a minute.')
      self._waiting.append(job)
      if job.ticket and job.ticket not in self._tickets:
        self._tickets[job.ticket] = job
      self._cond.notify_all()
    return job

  def cancel(self, job: Job, why: str = 'The request was cancelled.'):
    """Stops `job` (at its next chunk if it runs) and answers it now."""
    job.cancelled.set()
    with self._cond:
      if job in self._waiting:
        self._waiting.remove(job)
        self._forget(job)
    job._answer(error=Cancelled(why))  # pylint: disable=protected-access

  def stop(self):
    """Cancels every job and refuses new ones; returns at once."""
    with self._cond:
      self._stopped = True
      jobs = list(self._waiting) + ([self._running] if self._running else [])
      self._cond.notify_all()
    for job in jobs:
      self.cancel(job, 'The server is stopping.')

  def _forget(self, job: Job):
    if job.ticket and self._tickets.get(job.ticket) is job:
      del self._tickets[job.ticket]

  def _wait_estimate(self, ahead: list[Job]) -> float | None:
    if self.seconds_per_char is None:
      return None
    left = sum(job.work for job in ahead)
    running = self._running
    if running is not None:
      left += running.work * (1 - running.done / max(1, running.length))
    return left * self.seconds_per_char

  def status(self, ticket: str | None = None) -> dict[str, Any]:
    """{'waiting': n, 'running': bool} and, for a known ticket, 'state':
    'waiting' with 'position' (1 = next) and 'wait_s' (None before any
    estimate), or 'running' with 'done' (0..1) and 'compiling'."""
    with self._cond:
      out = {'waiting': len(self._waiting),
             'running': self._running is not None}
      job = self._tickets.get(ticket) if ticket else None
      if job is None:
        return out
      if job is self._running:
        out.update(state='running', done=job.done / max(1, job.length),
                   compiling=job.compiling)
      elif job in self._waiting:
        ahead = list(self._waiting)[:self._waiting.index(job)]
        out.update(state='waiting', position=len(ahead) + 1,
                   wait_s=self._wait_estimate(ahead))
      return out

  def _serve(self):
    while True:
      with self._cond:
        while not self._waiting and not self._stopped:
          self._cond.wait()
        if self._stopped:
          return
        job = self._waiting.popleft()
        job.compiling = job.shape not in self.compiled
        self._running = job
      self._run(job)

  def _run(self, job: Job):
    def on_chunk(done: int):
      job.done = done
      if job.cancelled.is_set():
        raise Cancelled('The request was cancelled.')

    start = time.monotonic()
    try:
      if job.cancelled.is_set():
        raise Cancelled('The request was cancelled.')
      result = job.run(on_chunk)
    except Exception as e:  # pylint: disable=broad-except
      job._answer(error=e)  # pylint: disable=protected-access
    else:
      job._answer(result)  # pylint: disable=protected-access
      seconds = (time.monotonic() - start) / max(1, job.work)
      with self._cond:
        if not job.compiling:  # Compiling says nothing of the next wait.
          old = self.seconds_per_char
          self.seconds_per_char = seconds if old is None else (
              (old + seconds) / 2)
        self.compiled.add(job.shape)
    finally:
      with self._cond:
        self._running = None
        self._forget(job)
