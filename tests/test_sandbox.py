"""Hostile programs in the sandbox: each is contained, fails with its reason, and the run ends."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from helox.eval.sandbox import SandboxLimits, run_program, run_programs, sandbox_user

# Generous: the test machine may be two busy cores.
LIMITS = SandboxLimits(timeout_s=4.0, memory_mb=512, workers=2)
SLACK_S = 20.0  # how late beyond its timeout a program may be reported, on a loaded machine
AS_ROOT = os.geteuid() == 0


def processes_in(folder_name: str) -> list[int]:
    """Live processes whose working folder is named `folder_name`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if Path(cwd.removesuffix(" (deleted)")).name == folder_name and state != b"Z":
            found.append(int(entry))
    return found


def test_passing_and_failing_programs_in_order():
    sources = ["assert sum([1, 2]) == 3\n", "assert sum([1, 2]) == 4\n", "raise SystemExit(3)\n"]
    results = run_programs(sources, LIMITS)
    assert [result.passed for result in results] == [True, False, False]
    assert [result.reason for result in results] == ["passed", "AssertionError", "exit code 3"]
    assert all(result.seconds > 0 for result in results)


def test_exit_before_checks_does_not_pass_with_a_marker():
    marker = "checks done 1234"
    early_exit = "import os\nos._exit(0)\nprint('checks done 1234')\n"
    finished = f"print({marker!r})\n"
    results = run_programs([early_exit, finished], LIMITS, [marker, marker])
    assert results[0].reason == "exited before its checks finished"
    assert results[1].passed


def test_endless_loop_is_killed_within_its_timeout():
    started = time.perf_counter()
    result = run_program("while True:\n    pass\n", SandboxLimits(timeout_s=2.0))
    assert result.reason == "timed out"
    assert not result.passed
    assert time.perf_counter() - started < 2.0 + SLACK_S


def test_cpu_time_limit_holds_before_the_wall_clock():
    result = run_program("while True:\n    pass\n", SandboxLimits(timeout_s=60.0, cpu_s=1))
    assert result.reason == "killed by SIGXCPU (CPU time limit)"
    assert result.seconds < 60.0


def test_memory_hog_fails_with_memory_error():
    hogs = [
        "blocks = []\nwhile True:\n    blocks.append(bytearray(2**20))\n",
        "block = bytearray(8 * 2**30)\n",
    ]
    results = run_programs(hogs, SandboxLimits(timeout_s=30.0, memory_mb=256))
    assert [result.reason for result in results] == ["MemoryError", "MemoryError"]


def test_file_size_limit_caps_files_and_stdout():
    big_file = "with open('big', 'wb') as out:\n    out.write(bytes(3 * 2**20))\n"
    endless_output = "while True:\n    print('x' * 1000)\n"
    results = run_programs([big_file, endless_output], SandboxLimits(file_size_mb=1))
    for result in results:
        assert result.reason == "OSError"
        assert "File too large" in result.detail


def test_fork_bomb_is_contained_and_leaves_no_process():
    token = f"bomb-{uuid.uuid4().hex}"
    bomb = (
        "import os, time\n"
        f"os.mkdir({token!r})\n"
        f"os.chdir({token!r})\n"
        # The counter beside it shares nobody's process limit: retry until this fork is let in.
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n"
        "if pid == 0:\n"  # a daemon that leaves the process group
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n"
    )
    counter = (
        "import os, time\n"
        f"os.mkdir({token!r})\n"
        f"os.chdir({token!r})\n"
        "children = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(600)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError:\n"
        "    raise RuntimeError(f'fork refused after {children} children')\n"
    )
    limits = SandboxLimits(timeout_s=3.0, max_processes=16)
    bomb_result, counter_result = run_programs([bomb, counter], limits)
    assert bomb_result.reason == "timed out"
    assert counter_result.reason == "RuntimeError"
    children = int(counter_result.detail.split("after ")[1].split()[0])
    assert children < limits.max_processes
    assert processes_in(token) == []


@pytest.mark.skipif(
    not AS_ROOT,
    reason="without root there is no privilege drop: the program "
    "may write wherever the user running Helox may",
)
def test_writing_outside_its_folder_fails_as_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)  # owned by root, as the folder of anything Helox writes
    os.chmod(tmp_path, 0o755)
    targets = [outside / "pwned", Path("/etc") / f"helox-sandbox-{uuid.uuid4().hex}"]
    sources = [f"open({str(target)!r}, 'w').write('pwned')\n" for target in targets]
    results = run_programs(sources, LIMITS)
    assert [result.reason for result in results] == ["PermissionError", "PermissionError"]
    assert not any(target.exists() for target in targets)


def test_runs_in_a_fresh_folder_that_is_removed_afterwards():
    program = (
        "import os, sys\n"
        "assert os.listdir('.') == ['program.py'], os.listdir('.')\n"
        "open('scratch.txt', 'w').write('ok')\n"
        "sys.stderr.write(os.getcwd())\n"
    )
    first, second = run_programs([program, program], LIMITS)
    assert first.passed and second.passed, (first, second)
    assert first.detail != second.detail
    assert not Path(first.detail).exists() and not Path(second.detail).exists()


def test_environment_is_stripped(monkeypatch):
    monkeypatch.setenv("HELOX_TEST_SECRET", "hunter2")
    lookup = "import os\nprint(os.environ['HELOX_TEST_SECRET'])\n"
    listing = (
        "import os\n"
        "assert sorted(os.environ) == ['HOME', 'LANG', 'PATH'], sorted(os.environ)\n"
        "assert os.environ['HOME'] == os.getcwd()\n"
        "try:\n"  # the supervisor's environment: unreadable as root, readable otherwise
        "    supervisor_environment = open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
        "except PermissionError:\n"
        "    supervisor_environment = b''\n"
        "assert b'hunter2' not in supervisor_environment\n"
    )
    results = run_programs([lookup, listing], LIMITS)
    assert results[0].reason == "KeyError"
    assert results[1].passed, results[1]


@pytest.mark.skipif(
    not AS_ROOT,
    reason="without root the program runs as the same user, who may read /proc/<helox pid>/environ",
)
def test_helox_process_environment_is_unreadable_as_root(monkeypatch):
    monkeypatch.setenv("HELOX_TEST_SECRET", "hunter2")
    program = f"print(open('/proc/{os.getpid()}/environ', 'rb').read())\n"
    result = run_program(program, LIMITS)
    assert result.reason == "PermissionError"
    user = sandbox_user()
    check_uid = f"import os\nassert os.getuid() == {user.uid} and os.getgroups() == []\n"
    assert run_program(check_uid, LIMITS).passed


def test_segfault_is_a_failure_with_its_signal():
    sources = [
        "import ctypes\nctypes.string_at(0)\n",
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    ]
    results = run_programs(sources, LIMITS)
    assert [result.reason for result in results] == ["killed by SIGSEGV (segmentation fault)"] * 2


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=0)
    with pytest.raises(ValueError, match="workers"):
        SandboxLimits(workers=0)
