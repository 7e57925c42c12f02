"""A pool of long-lived worker processes that answer length-prefixed JSON messages, with a hard deadline per task.

The sandbox host keeps its zygotes in it (starting Python per program would dominate the cost of scoring), and the
math reward its math-verify workers (their signal-based timeouts only work in a process's main thread): both need
work that runs in another process and is killed, never waited for, when it overruns. The pool is driven from
the calling thread with `selectors`, so it needs no threads of its own and works from any thread. A worker that
misses a task's deadline, or dies, is killed with its whole process group and replaced; the task comes back as
failed (`None`), never as a hang.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 1 << 30


def workers_per_process(env_var: str, cap: int) -> int:
    """`env_var` if set, else the CPUs this process may use shared among the node's training processes (at most
    `cap`): every rank of a launch starts its own pool."""
    if env_var in os.environ:
        return max(1, int(os.environ[env_var]))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(cap, cpus // max(1, local_processes)))


def encode_message(payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(len(body)) + body


class MessageReader:
    """Splits a byte stream into the JSON messages of `encode_message`."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > MAX_MESSAGE_BYTES:
                raise ValueError(f"message of {length} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            messages.append(json.loads(bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return messages


class WorkerStartError(RuntimeError):
    """A worker could not start or refused to run (for example, its timeout mechanism is unavailable)."""


@dataclass
class TaskFailure:
    """Why a task got no answer: `timeout` (deadline passed, worker killed) or `crashed` (worker died)."""

    reason: str
    detail: str = ""


@dataclass
class _Worker:
    process: subprocess.Popen
    stderr_file: object
    reader: MessageReader = field(default_factory=MessageReader)
    outbox: bytearray = field(default_factory=bytearray)
    task_index: int | None = None
    deadline: float = 0.0

    def stderr_tail(self, limit: int = 2000) -> str:
        try:
            self.stderr_file.seek(0)
            return self.stderr_file.read()[-limit:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""


class WorkerPool:
    """`size` workers started from `argv`; `run(tasks, timeouts)` sends each task to an idle worker.

    A worker's first message is its hello (`{"ready": true, ...}` or `{"error": "..."}`); after that it answers each
    task message with exactly one message.
    """

    def __init__(
        self,
        argv: Sequence[str] | Callable[[], Sequence[str]],
        size: int,
        *,
        name: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        start_timeout: float = 120.0,
    ):
        if size < 1:
            raise ValueError(f"a {name} pool needs at least one worker, got size={size}")
        self.argv = argv if callable(argv) else list(argv)  # a callable gives each worker its own command line
        self.size = size
        self.name = name
        self.env = env
        self.cwd = cwd
        self.start_timeout = start_timeout
        self.owner_pid = os.getpid()
        self.hello: dict | None = None
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False

    # -- worker lifecycle -------------------------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        stderr_file = tempfile.TemporaryFile()
        process = subprocess.Popen(
            list(self.argv()) if callable(self.argv) else self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # its own process group, so a kill takes everything it started
            close_fds=True,
        )
        os.set_blocking(process.stdin.fileno(), False)
        os.set_blocking(process.stdout.fileno(), False)
        return _Worker(process=process, stderr_file=stderr_file)

    def _await_hello(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = {w.process.stdout.fileno(): w for w in workers}
        with selectors.DefaultSelector() as selector:
            for fd in pending:
                selector.register(fd, selectors.EVENT_READ)
            while pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    worker = next(iter(pending.values()))
                    reason = f"did not start within {self.start_timeout:.0f}s; stderr: {worker.stderr_tail()}"
                    self._kill(worker)  # closes its stderr file: the reason is read first
                    raise WorkerStartError(f"{self.name} worker {reason}")
                for key, _ in selector.select(remaining):
                    worker = pending[key.fd]
                    data = _read_available(key.fd)
                    messages = worker.reader.feed(data) if data else []
                    if not data or messages:
                        selector.unregister(key.fd)
                        del pending[key.fd]
                    if not data:
                        try:  # its output closes a moment before it can be reaped
                            code = worker.process.wait(timeout=5)
                        except subprocess.TimeoutExpired:
                            code = None
                        reason = f"exited during start-up (code {code}); stderr: {worker.stderr_tail()}"
                        self._kill(worker)  # closes its stderr file: the reason is read first
                        raise WorkerStartError(f"{self.name} worker {reason}")
                    if messages:
                        hello = messages[0]
                        if not hello.get("ready"):
                            self._kill(worker)
                            raise WorkerStartError(f"{self.name} worker refused to run: {hello.get('error', hello)}")
                        self.hello = hello

    def _ensure_workers(self) -> None:
        self._workers = [w for w in self._workers if w.process.poll() is None]
        missing = self.size - len(self._workers)
        if missing <= 0:
            return
        new = [self._spawn() for _ in range(missing)]
        try:
            self._await_hello(new)
        except BaseException:
            for worker in new:
                self._kill(worker)
            raise
        self._workers.extend(new)

    def _kill(self, worker: _Worker) -> None:
        try:
            os.killpg(worker.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            worker.process.kill()
        except (ProcessLookupError, PermissionError):
            pass
        try:
            worker.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.error("%s worker %d did not die after SIGKILL", self.name, worker.process.pid)
        for stream in (worker.process.stdin, worker.process.stdout, worker.stderr_file):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        if worker in self._workers:
            self._workers.remove(worker)

    def start(self) -> None:
        """Start every worker now (otherwise the first `run` does); raises WorkerStartError with the reason."""
        with self._lock:
            self._ensure_workers()

    def close(self) -> None:
        """Stop every worker (closing its stdin asks it to exit; stragglers are killed)."""
        with self._lock:
            self._closed = True
            if os.getpid() != self.owner_pid:  # a forked child must not touch its parent's workers
                self._workers = []
                return
            for worker in list(self._workers):
                try:
                    worker.process.stdin.close()
                except OSError:
                    pass
            end = time.monotonic() + 2.0
            for worker in list(self._workers):
                try:
                    worker.process.wait(timeout=max(0.0, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                self._kill(worker)

    # -- dispatch ---------------------------------------------------------------------------------------------------

    def run(
        self, tasks: Sequence[dict], timeouts: Sequence[float], affinity: Sequence[str] | None = None
    ) -> list[dict | TaskFailure]:
        """Answer every task; `timeouts[i]` is the wall-clock seconds task i may take once a worker has it.

        Tasks with equal `affinity` keys go to the same worker when it is free (so it reuses what it cached for
        that key, such as a parsed gold answer); otherwise any free worker takes the oldest task.
        """
        if len(tasks) != len(timeouts) or (affinity is not None and len(affinity) != len(tasks)):
            raise ValueError(f"{len(tasks)} tasks but {len(timeouts)} timeouts / {len(affinity or ())} keys")
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the {self.name} pool is closed")
            if os.getpid() != self.owner_pid:
                raise RuntimeError(f"the {self.name} pool belongs to process {self.owner_pid}, not {os.getpid()}")
            results: list[dict | TaskFailure | None] = [None] * len(tasks)
            queue = deque(range(len(tasks)))
            homes: dict[str, _Worker] = {}
            while queue or any(w.task_index is not None for w in self._workers):
                self._ensure_workers()
                self._dispatch_round(tasks, timeouts, queue, results, affinity, homes)
            return results  # type: ignore[return-value]

    def _next_task(self, worker: _Worker, queue: deque, affinity, homes: dict) -> int:
        if affinity is None:
            return queue.popleft()
        for position, index in enumerate(queue):
            home = homes.get(affinity[index])
            if home is None or home is worker or home not in self._workers:
                del queue[position]
                homes[affinity[index]] = worker
                return index
        return queue.popleft()  # every queued key lives on a busy worker: share the work rather than wait

    def _dispatch_round(self, tasks, timeouts, queue: deque, results: list, affinity, homes: dict) -> None:
        """Run the selector loop until every worker is idle, or until one was lost and must be replaced."""
        with selectors.DefaultSelector() as selector:
            by_fd: dict[int, _Worker] = {}
            for worker in self._workers:
                by_fd[worker.process.stdout.fileno()] = worker
                by_fd[worker.process.stdin.fileno()] = worker
                selector.register(worker.process.stdout.fileno(), selectors.EVENT_READ)
                if worker.outbox:  # a message half-written when the previous round ended
                    self._flush(worker, selector)
            while True:
                for worker in self._workers:
                    if worker.task_index is None and queue:
                        index = self._next_task(worker, queue, affinity, homes)
                        worker.task_index = index
                        worker.deadline = time.monotonic() + timeouts[index]
                        worker.outbox += encode_message(tasks[index])
                        self._flush(worker, selector)
                busy = [w for w in self._workers if w.task_index is not None]
                if not busy:
                    return
                now = time.monotonic()
                for worker in busy:
                    if now >= worker.deadline:
                        results[worker.task_index] = TaskFailure(
                            "timeout", f"no answer within {timeouts[worker.task_index]:.1f}s"
                        )
                        self._drop(worker, selector, by_fd)
                        return
                wait = min(w.deadline for w in busy) - now
                for key, events in selector.select(max(0.0, wait)):
                    worker = by_fd[key.fd]
                    if worker not in self._workers:
                        continue
                    if events & selectors.EVENT_WRITE:
                        self._flush(worker, selector)
                    if events & selectors.EVENT_READ:
                        data = _read_available(key.fd)
                        if not data:
                            index = worker.task_index
                            if index is not None:
                                results[index] = TaskFailure(
                                    "crashed",
                                    f"worker exited with code {worker.process.poll()}: {worker.stderr_tail(300)}",
                                )
                            self._drop(worker, selector, by_fd)
                            return
                        for message in worker.reader.feed(data):
                            if worker.task_index is None:
                                raise RuntimeError(f"{self.name} worker sent an unrequested message: {message!r:.200}")
                            results[worker.task_index] = message
                            worker.task_index = None

    def _flush(self, worker: _Worker, selector) -> None:
        fd = worker.process.stdin.fileno()
        try:
            written = os.write(fd, worker.outbox) if worker.outbox else 0
        except BlockingIOError:
            written = 0
        except BrokenPipeError:
            worker.outbox.clear()  # the read side reports the death
            written = 0
        del worker.outbox[:written]
        registered = fd in selector.get_map()
        if worker.outbox and not registered:
            selector.register(fd, selectors.EVENT_WRITE)
        elif not worker.outbox and registered:
            selector.unregister(fd)

    def _drop(self, worker: _Worker, selector, by_fd) -> None:
        for fd in (worker.process.stdout.fileno(), worker.process.stdin.fileno()):
            if fd in selector.get_map():
                selector.unregister(fd)
        self._kill(worker)


def _read_available(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            if not chunks:
                return b""
            break
        chunks.append(chunk)
        if len(chunk) < (1 << 20):
            break
    return b"".join(chunks)


def read_message(stream) -> dict | None:
    """Blocking read of one message from a binary stream (the worker side); None at end of input."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    body = _read_exactly(stream, length)
    if body is None:
        return None
    return json.loads(body)


def _read_exactly(stream, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)
