"""Run untrusted Python programs (model-written code) outside the Helox process, contained.

Each program runs in a fresh interpreter (`-I -S -B`: no environment variables, no
site-packages, no script folder on sys.path, no bytecode written) in a throw-away folder,
under limits on wall-clock time, CPU time, address space, file size, open files and process
count, with an environment holding only PATH, HOME (its folder) and LANG. Run as root, it
drops to an unprivileged user (nobody) that owns only its folder. A supervisor process
(`helox.eval.supervisor`) kills the program's process group and every descendant once the
program exits or its time runs out. What the sandbox does not stop is listed in the README.
"""

from __future__ import annotations

import functools
import grp
import json
import logging
import math
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

SUPERVISOR_SOURCE = (Path(__file__).with_name("supervisor.py")).read_text(encoding="utf-8")
PROGRAM_NAME = "program.py"
TAIL_BYTES = 4096  # what is read back of a program's stdout and stderr, from their ends
# Seconds the supervisor may take beyond the program's own limit before it is killed itself.
SUPERVISOR_GRACE_S = 30.0
EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.]*)(:|$)")
PROGRAM_PATH = "/usr/local/bin:/usr/bin:/bin"
# The supervisor's own environment: nothing of Helox's, which a program could read from /proc.
SUPERVISOR_ENV = {"PATH": PROGRAM_PATH, "LANG": "C.UTF-8"}
SIGNAL_MEANINGS = {
    signal.SIGXCPU: "CPU time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGKILL: "killed",
}


@dataclass
class SandboxLimits:
    """What one program may use."""

    timeout_s: float = 5.0  # wall clock
    # CPU seconds (RLIMIT_CPU); None: a second past timeout_s rounded up, so that one busy
    # thread meets the wall clock first and the CPU limit catches what outruns it (threads).
    cpu_s: int | None = None
    memory_mb: int = 1024  # address space
    file_size_mb: int = 16  # any one file it writes, its stdout and stderr included
    max_processes: int = 64  # of the user it runs as (all of nobody's processes when root)
    open_files: int = 256
    workers: int = 2  # programs run side by side

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "file_size_mb", "max_processes", "open_files"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"sandbox limit {name} must be positive, got {getattr(self, name)}"
                )
        if self.cpu_s is not None and self.cpu_s <= 0:
            raise ValueError(f"sandbox limit cpu_s must be positive, got {self.cpu_s}")
        if self.workers < 1:
            raise ValueError(f"sandbox workers must be at least 1, got {self.workers}")


@dataclass
class RunResult:
    """How one program ended."""

    passed: bool
    reason: str  # "passed", "timed out", "AssertionError", "killed by SIGSEGV (...)", ...
    seconds: float
    detail: str = ""  # the last line of its stderr, cut to 300 characters


@dataclass(frozen=True)
class SandboxUser:
    uid: int
    gid: int
    name: str


def sandbox_user() -> SandboxUser | None:
    """The unprivileged user programs run as when Helox runs as root; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam("nobody")
        uid, gid = user.pw_uid, user.pw_gid
    except KeyError:
        uid = gid = 65534
    for group_name in ("nogroup", "nobody"):
        try:
            gid = grp.getgrnam(group_name).gr_gid
            break
        except KeyError:
            continue
    return SandboxUser(uid, gid, "nobody")


def interpreter_candidates() -> list[str]:
    """Interpreters to try for the programs, this process's own first."""
    found = [os.path.realpath(sys.executable), getattr(sys, "_base_executable", "")]
    found += [shutil.which(name) or "" for name in ("python3", "python")]
    found += ["/usr/bin/python3", "/usr/local/bin/python3"]
    unique = []
    for path in found:
        if path and os.path.realpath(path) not in unique and os.access(path, os.X_OK):
            unique.append(os.path.realpath(path))
    return unique


@functools.cache
def program_interpreter() -> str:
    """This process's interpreter, or, when the sandbox user cannot run it (Python installed
    under /root, for example), the first other Python 3 on the system that it can run."""
    tried = []
    probe = SandboxLimits(timeout_s=30.0)
    for interpreter in interpreter_candidates():
        result = run_program("import sys\nassert sys.version_info >= (3, 8)\n", probe, interpreter)
        if result.passed:
            if tried:
                log.warning(
                    "the sandbox user cannot run %s (%s); programs run with %s",
                    tried[0][0],
                    tried[0][1],
                    interpreter,
                )
            return interpreter
        tried.append((interpreter, result.detail or result.reason))
    user = sandbox_user()
    raise RuntimeError(
        f"no Python interpreter that the sandbox user {user.name if user else os.getuid()} "
        "can run; tried "
        + "; ".join(f"{path} ({why})" for path, why in tried)
        + ". Install Python where every user can read it, or run Helox as a non-root user."
    )


def read_tail(file: IO[bytes]) -> str:
    """The last TAIL_BYTES of an open file, decoded leniently."""
    size = file.seek(0, os.SEEK_END)
    file.seek(max(0, size - TAIL_BYTES))
    return file.read().decode("utf-8", errors="replace")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def failure_reason(status: int, stderr_tail: str) -> str:
    """Why a program that did not exit with 0 failed, from its wait status and stderr."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        meaning = SIGNAL_MEANINGS.get(number)
        return f"killed by {name}" + (f" ({meaning})" if meaning else "")
    code = os.WEXITSTATUS(status)
    match = EXCEPTION_LINE.match(last_line(stderr_tail))
    # A traceback's last line names its exception; a SyntaxError's report has no traceback.
    if match and ("Traceback (most recent call last)" in stderr_tail or match[1].endswith("Error")):
        return match[1]
    return f"exit code {code}"


def remove_folder(folder: str) -> None:
    """Delete a program's folder, even where the program took its own permissions away."""

    def allow_and_retry(function, path, _):
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
        function(path)

    shutil.rmtree(folder, onerror=allow_and_retry)


def run_program(
    source: str,
    limits: SandboxLimits,
    interpreter: str | None = None,
    success_marker: str | None = None,
) -> RunResult:
    """Run `source` in the sandbox. It passes when it exits with 0 and, given a
    `success_marker`, printed that as its last line of stdout (so a program that calls
    exit(0) before its checks ran does not pass)."""
    user = sandbox_user()
    folder = tempfile.mkdtemp(prefix="helox-sandbox-")
    started = time.perf_counter()
    try:
        Path(folder, PROGRAM_NAME).write_text(source, encoding="utf-8")
        if user is not None:
            os.chown(folder, user.uid, user.gid)
            os.chown(Path(folder, PROGRAM_NAME), user.uid, user.gid)
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            report = supervise(folder, limits, interpreter, user, stdout, stderr)
            seconds = time.perf_counter() - started
            return judge(report, read_tail(stdout), read_tail(stderr), seconds, success_marker)
    finally:
        remove_folder(folder)


def supervise(
    folder: str,
    limits: SandboxLimits,
    interpreter: str | None,
    user: SandboxUser | None,
    stdout: IO[bytes],
    stderr: IO[bytes],
) -> dict:
    """Start the supervisor on the program in `folder`; return its report."""
    settings = {
        "program": PROGRAM_NAME,
        "interpreter": interpreter or program_interpreter(),
        "timeout_s": limits.timeout_s,
        "limits": {
            "cpu_s": limits.cpu_s or math.ceil(limits.timeout_s) + 1,
            "address_space_bytes": limits.memory_mb * 2**20,
            "file_size_bytes": limits.file_size_mb * 2**20,
            "open_files": limits.open_files,
            "core_bytes": 0,
        },
        "max_processes": limits.max_processes,
        "uid": user.uid if user else None,
        "gid": user.gid if user else None,
        "env": {"PATH": PROGRAM_PATH, "HOME": folder, "LANG": "C.UTF-8"},
        "stdout_fd": stdout.fileno(),
        "stderr_fd": stderr.fileno(),
    }
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-B", "-c", SUPERVISOR_SOURCE, json.dumps(settings)],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(stdout.fileno(), stderr.fileno()),
        env=SUPERVISOR_ENV,
        start_new_session=True,
    )
    try:
        report_text, supervisor_errors = process.communicate(
            timeout=limits.timeout_s + SUPERVISOR_GRACE_S
        )
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return {"status": None, "timed_out": True, "setup_error": None}
    if process.returncode != 0:
        raise RuntimeError(
            f"the sandbox supervisor failed (exit {process.returncode}): "
            f"{supervisor_errors.decode(errors='replace')[-2000:]}"
        )
    return json.loads(report_text)


def judge(
    report: dict, stdout_tail: str, stderr_tail: str, seconds: float, marker: str | None
) -> RunResult:
    """Turn the supervisor's report and the program's output into a RunResult."""
    detail = last_line(stderr_tail)
    if report["setup_error"]:
        return RunResult(False, "sandbox setup failed", seconds, report["setup_error"][:300])
    if report["timed_out"]:
        return RunResult(False, "timed out", seconds, detail)
    status = report["status"]
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        if marker is not None and last_line(stdout_tail) != marker:
            return RunResult(False, "exited before its checks finished", seconds, detail)
        return RunResult(True, "passed", seconds, detail)
    return RunResult(False, failure_reason(status, stderr_tail), seconds, detail)


def run_programs(
    sources: list[str], limits: SandboxLimits, success_markers: list[str | None] | None = None
) -> list[RunResult]:
    """Run every program in the sandbox, `limits.workers` at a time; results in input order."""
    markers = success_markers or [None] * len(sources)
    if len(markers) != len(sources):
        raise ValueError(f"{len(markers)} success markers for {len(sources)} programs")
    interpreter = program_interpreter()
    with ThreadPoolExecutor(max_workers=limits.workers) as pool:
        return list(
            pool.map(
                lambda source, marker: run_program(source, limits, interpreter, marker),
                sources,
                markers,
            )
        )
