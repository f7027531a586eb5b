"""Short Python scripts run in real child processes without paying Python's and Locust's start-up each time.

A test of a bad option value needs a fresh process: Locust's parser prints the error and exits 2. Started with
``python -c``, each such process spends about 1.5 s importing gevent, Locust and its web stack, for a parse of a
few milliseconds; the option tests run some 50 of them at each end of CI. :class:`ForkingPython` imports all that
once, in one interpreter (started with :func:`~support.processes.child_env`, like every other child), and
forks a child per script: the child changes to the script's folder and environment, points its stdout and
stderr at files, runs the script as ``__main__`` with ``sys.argv`` set, and exits with the script's exit code
(``SystemExit`` as ``python -c`` maps it; 1 and a traceback for any other exception). The result is a
``subprocess.CompletedProcess``, as ``subprocess.run(..., capture_output=True, text=True)`` gives.

Each child starts from the state right after ``import locust, locust_metrics``, which is what a fresh ``python
-c`` running the same script reaches after its own imports: the scripts still import what they use.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .processes import child_env

SERVER = r"""
import json, os, sys, traceback
from gevent import monkey

import locust  # noqa: F401  (and gevent's monkey patching, as in every Locust process)
import locust.argument_parser  # noqa: F401
import locust_metrics  # noqa: F401

fork, waitpid = monkey.get_original("os", "fork"), monkey.get_original("os", "waitpid")
replies = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing but replies on the pipe
for line in sys.stdin:
    request = json.loads(line)
    pid = fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
            sys.argv = ["-c", *request["args"]]
            try:
                exec(compile(request["script"], "<string>", "exec"), {"__name__": "__main__"})
                code = 0
            except SystemExit as exit:
                if exit.code is None or isinstance(exit.code, int):
                    code = exit.code or 0
                else:
                    print(exit.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = waitpid(pid, 0)
    replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
    replies.flush()
"""


class ForkingPython:
    """One interpreter with Locust and locust_metrics imported, forking a child per :meth:`run` (see the module's
    docstring). Use it as a context manager (or call :meth:`close`)."""

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="forking-python-")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(),
        )
        self._runs = 0

    def run(self, script: str, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``script`` as ``python -c script *args`` would, in ``cwd`` (default: this process's) with ``env``
        (default :func:`child_env`). ``TimeoutError`` after ``timeout`` seconds; ``RuntimeError`` if the forking
        interpreter died."""
        self._runs += 1
        out, err = (Path(self._folder.name) / f"{self._runs}.{kind}" for kind in ("out", "err"))
        request = {"script": script, "args": list(args), "cwd": str(cwd or os.getcwd()),
                   "env": env if env is not None else child_env(), "stdout": str(out), "stderr": str(err)}
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise TimeoutError(f"a forked script did not finish within {timeout} s: {args}")
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the forking interpreter exited with code {self._proc.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return subprocess.CompletedProcess([sys.executable, "-c", script, *args], reply["returncode"],
                                           out.read_text(errors="replace"), err.read_text(errors="replace"))

    def close(self) -> None:
        """Stop the interpreter (its children have all exited) and remove the output files."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._folder.cleanup()

    def __enter__(self) -> ForkingPython:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
