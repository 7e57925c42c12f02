import os
import sys
from pathlib import Path

import pytest

from ssp.sandbox.pool import MessageReader, TaskFailure, WorkerPool, WorkerStartError, encode_message

REPO = Path(__file__).resolve().parents[2]
ECHO_WORKER = """
import os, sys, time
from ssp.sandbox.pool import encode_message, read_message
out = os.fdopen(os.dup(1), "wb", buffering=0)
out.write(encode_message({"ready": True}))
while (task := read_message(sys.stdin.buffer)) is not None:
    time.sleep(task.get("sleep", 0))
    if task.get("die"):
        os._exit(3)
    out.write(encode_message({"echo": task["value"], "pid": os.getpid()}))
"""


def echo_pool(size=2, source=ECHO_WORKER):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return WorkerPool([sys.executable, "-c", source], size, name="echo", env=env, start_timeout=60)


def test_message_framing_survives_split_reads():
    data = encode_message({"a": 1}) + encode_message({"b": "x" * 1000})
    reader = MessageReader()
    messages = [m for i in range(0, len(data), 7) for m in reader.feed(data[i : i + 7])]
    assert messages == [{"a": 1}, {"b": "x" * 1000}]


def test_results_come_back_in_task_order():
    pool = echo_pool()
    try:
        tasks = [{"value": i, "sleep": 0.01 * (i % 3)} for i in range(20)]
        results = pool.run(tasks, [30.0] * 20)
        assert [r["echo"] for r in results] == list(range(20))
        assert len({r["pid"] for r in results}) == 2
    finally:
        pool.close()


def test_a_worker_that_dies_or_overruns_is_replaced():
    pool = echo_pool()
    try:
        tasks = [{"value": 0}, {"value": 1, "die": True}, {"value": 2, "sleep": 30}, {"value": 3}]
        results = pool.run(tasks, [30.0, 30.0, 0.5, 30.0])
        assert results[0]["echo"] == 0 and results[3]["echo"] == 3
        assert isinstance(results[1], TaskFailure) and results[1].reason == "crashed"
        assert isinstance(results[2], TaskFailure) and results[2].reason == "timeout"
        assert [r["echo"] for r in pool.run([{"value": 5}, {"value": 6}], [30.0, 30.0])] == [5, 6]
    finally:
        pool.close()


def test_affinity_keeps_a_key_on_one_worker():
    pool = echo_pool()
    try:
        tasks = [{"value": i, "sleep": 0.02} for i in range(12)]
        keys = ["a", "b"] * 6
        results = pool.run(tasks, [30.0] * 12, affinity=keys)
        pids = {key: {r["pid"] for r, k in zip(results, keys, strict=True) if k == key} for key in "ab"}
        assert len(pids["a"]) == 1 and len(pids["b"]) == 1 and pids["a"] != pids["b"]
    finally:
        pool.close()


def test_a_worker_that_refuses_to_start_raises_its_reason():
    refusing = "import os\nfrom ssp.sandbox.pool import encode_message\n"
    refusing += "os.write(1, encode_message({'error': 'no timer here'}))\n"
    pool = echo_pool(size=1, source=refusing)
    with pytest.raises(WorkerStartError, match="refused to run: no timer here"):
        pool.start()
    pool.close()


def test_a_worker_that_exits_during_start_up_raises_its_exit_code_and_stderr():
    exiting = "import sys\nsys.stderr.write('cannot start: no namespace\\n')\nsys.exit(3)\n"
    pool = echo_pool(size=1, source=exiting)
    with pytest.raises(WorkerStartError) as raised:
        pool.start()
    assert str(raised.value) == "echo worker exited during start-up (code 3); stderr: cannot start: no namespace\n"
    pool.close()


def test_a_closed_pool_refuses_work():
    pool = echo_pool(size=1)
    pool.close()
    with pytest.raises(RuntimeError, match="pool is closed"):
        pool.run([{"value": 1}], [5.0])
