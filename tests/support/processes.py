"""Child processes for tests: real Locust (``python -m locust``), the demo target; the environment they get;
binaries a test needs. All on 127.0.0.1.

Everything here is bounded in time: every process has a timeout and is killed when a test ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .net import wait_for_http
from .paths import REPO


def require_binary(name: str) -> str:
    """Path of a binary the test needs; skips locally when missing, fails under CI (CI must install it)."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not installed (Debian package: prometheus); .ci/run installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: this checkout first on PYTHONPATH, no stray LOCUST_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class LocustProcess:
    """A real ``locust`` process (``python -m locust``) with its output collected to a file."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, name: str = "locust") -> None:
        self.log_path = Path(cwd) / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.args = [sys.executable, "-m", "locust", *args]
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, env=env or child_env(), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the exit code; kills the process group and fails the test after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"locust did not exit within {timeout}s:\n{self.output()[-3000:]}")

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.running():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until ``text`` appears in the output (not a fixed sleep: start-up time varies with load)."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if not self.running() or time.monotonic() > deadline:
                pytest.fail(f"locust never printed {text!r}:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def close(self) -> None:
        self.kill()
        self._log.close()


@contextmanager
def locust(args: list[str], cwd: Path, env: dict[str, str] | None = None, name: str = "locust") -> Iterator[LocustProcess]:
    """Run a Locust process for the duration of a ``with`` block; it is always killed at the end."""
    process = LocustProcess(args, cwd, env, name)
    try:
        yield process
    finally:
        process.close()


def run_locust(args: list[str], cwd: Path, timeout: float = 60, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run Locust to completion; returns (exit code, combined output)."""
    with locust(args, cwd, env) as process:
        code = process.wait(timeout)
        return code, process.output()


def start_demo_target(port: int, log_path: Path) -> subprocess.Popen:
    """Start ``examples/demo_target.py`` on 127.0.0.1:``port`` and wait until ``/health`` answers."""
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "demo_target.py"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env(), start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=20)
    except TimeoutError:
        proc.kill()
        raise
    return proc
