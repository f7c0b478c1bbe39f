"""The sandbox's supervisor: runs one candidate program and cleans up after it.

Never imported by Helox: `helox.eval.sandbox` starts it as `python -I -S -c <this source>
<settings JSON>`, so it sees only the standard library. It makes itself a child subreaper
(every orphaned descendant of the candidate is handed to it, even one that left the process
group with setsid), forks the candidate into a process group of its own, sets the resource
limits, drops privileges when it was given a uid, and execs a fresh interpreter on the
program. When the program exits or its wall-clock time runs out, it SIGKILLs the process
group and then every descendant still alive, reaps them all, and prints one JSON line:
{"status": waitpid status or null, "timed_out": bool, "setup_error": str or null}.
"""

import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
LIMITS = {
    "cpu_s": resource.RLIMIT_CPU,
    "address_space_bytes": resource.RLIMIT_AS,
    "file_size_bytes": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "core_bytes": resource.RLIMIT_CORE,
}


class WallClockExpired(Exception):
    pass


def raise_expired(signum, frame):
    raise WallClockExpired


def exec_candidate(settings: dict) -> None:
    """In the forked child: limits, privileges, then the candidate's interpreter. No return."""
    os.setpgid(0, 0)
    os.dup2(settings["stdout_fd"], 1)
    os.dup2(settings["stderr_fd"], 2)
    os.close(settings["stdout_fd"])
    os.close(settings["stderr_fd"])
    for name, value in settings["limits"].items():
        hard = value + 1 if name == "cpu_s" else value
        resource.setrlimit(LIMITS[name], (value, hard))
    if settings["uid"] is not None:
        os.setgroups([])
        os.setgid(settings["gid"])
        os.setuid(settings["uid"])
    # After setuid, so a busy sandbox user cannot block the exec itself (PF_NPROC_EXCEEDED).
    processes = settings["max_processes"]
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    interpreter = settings["interpreter"]
    os.execve(interpreter, [interpreter, "-I", "-S", "-B", settings["program"]], settings["env"])


def start_candidate(settings: dict) -> tuple[int, str | None]:
    """Fork the candidate; return its pid and the error that stopped it before exec, if any."""
    error_read, error_write = os.pipe()  # close-on-exec: EOF here means the exec succeeded
    pid = os.fork()
    if pid == 0:
        os.close(error_read)
        try:
            exec_candidate(settings)
        except BaseException as error:
            os.write(error_write, f"{type(error).__name__}: {error}".encode())
        os._exit(127)
    os.close(error_write)
    with contextlib.suppress(OSError):  # the child did it already, or has exec'd
        os.setpgid(pid, pid)
    with os.fdopen(error_read, "rb") as errors:
        setup_error = errors.read().decode(errors="replace")
    return pid, setup_error or None


def child_pids(parent: int) -> list[int]:
    """Live processes whose parent is `parent`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found


def kill_descendants() -> None:
    """SIGKILL and reap every process handed to this subreaper until none is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        for child in child_pids(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        time.sleep(0.005)


def main() -> None:
    settings = json.loads(sys.argv[1])
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGALRM, raise_expired)
    pid, setup_error = start_candidate(settings)
    timed_out = False
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, settings["timeout_s"])
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except WallClockExpired:
        timed_out = True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    kill_descendants()
    report = {"status": status, "timed_out": timed_out, "setup_error": setup_error}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
