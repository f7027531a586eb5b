"""Child processes for tests: any command (:class:`ChildProcess`), real Locust (:class:`LocustProcess`), the demo
target; the environment they get; binaries a test needs. All on 127.0.0.1.

Everything here is bounded in time: every wait has a timeout, and every process runs in its own process group,
which is killed when the test is done with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from signal import SIGINT, SIGKILL, SIGTERM

import pytest

from .net import wait_for_http
from .paths import REPO, TESTS
from .waiting import wait_for

DEBIAN_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "prometheus-pushgateway": "prometheus-pushgateway",
    "pushgateway": "prometheus-pushgateway",
}
"""The Debian package of each binary the tests run (``.ci/run`` installs them)."""


def require_binary(*names: str) -> str:
    """Path of the first of ``names`` on PATH (e.g. ``"prometheus-alertmanager", "alertmanager"``).

    When none is installed the test is skipped, naming the Debian package to install; under ``CI`` (environment
    variable set) it fails instead, so that CI cannot pass by skipping.
    """
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    package = DEBIAN_PACKAGES.get(names[0], names[0])
    message = f"{' / '.join(names)} not installed: apt-get install {package} (Debian package; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message + ", and CI must install it")
    pytest.skip(message)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: no stray ``LOCUST_`` variables, unbuffered output, and on PYTHONPATH first
    this checkout (its ``locust_metrics``), then ``tests/`` (so a test locustfile can import ``support.fakes`` and
    ``support.hostile``); ``extra`` variables on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ChildProcess:
    """A command run in its own process group, stdin closed, its output (stdout and stderr) in a log file.

    Args:
        args: the command line.
        cwd: its working directory.
        env: its environment (default :func:`child_env`).
        name: for messages; the log file is ``<name>.log``.
        log_dir: where the log file goes (default ``cwd``).

    ``close()`` (and the end of a ``with`` block) kills the whole process group; ``stop()`` asks it to stop
    (SIGTERM) first.
    """

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, name: str = "process",
                 log_dir: Path | None = None) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = Path(log_dir if log_dir is not None else cwd) / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, env=env if env is not None else child_env(), stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        """Wait for the exit code; kills the process group and fails the test after ``timeout`` seconds."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not exit within {timeout}s:\n{self.output()[-3000:]}")

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until ``text`` appears in the output; fails the test if it exits or ``timeout`` s pass first."""
        try:
            wait_for(lambda: text in self.output() or not self.running(), timeout, 0.1, f"{self.name} to print {text!r}")
        except TimeoutError:
            pass
        if text not in self.output():
            pytest.fail(f"{self.name} never printed {text!r}:\n{self.output()[-3000:]}")

    def interrupt(self, timeout: float = 30.0, every: float = 10.0) -> int:
        """Ctrl-C as a user presses it: SIGINT, again every ``every`` seconds while the process still runs (CPython
        drops a ``KeyboardInterrupt`` raised inside a finalizer, printing "Exception ignored in ..."), and the exit
        code; fails the test after ``timeout`` s. A repeated Ctrl-C is reported as a warning with the output's tail."""
        deadline = time.monotonic() + timeout
        presses = 0
        while True:
            self.signal(SIGINT)
            presses += 1
            try:
                code = self.proc.wait(timeout=max(0.1, min(every, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    continue
                self.kill()
                pytest.fail(f"{self.name} did not exit within {timeout}s of Ctrl-C:\n{self.output()[-3000:]}")
            if presses > 1:
                warnings.warn(f"{self.name} needed {presses} Ctrl-C to exit:\n{self.output()[-1500:]}", stacklevel=2)
            return code

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process itself (not its group), as a Ctrl-C or ``kill`` would."""
        if self.running():
            os.kill(self.proc.pid, sig)

    def kill(self, sig: int = SIGKILL, timeout: float = 10.0) -> None:
        """Send ``sig`` (default SIGKILL) to the whole process group and wait up to ``timeout`` s for the exit."""
        if self.running():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL if it still runs ``timeout`` s later; closes the log. Idempotent."""
        try:
            self.kill(SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            self.kill(SIGKILL, timeout)
        self._log.close()

    def close(self) -> None:
        """SIGKILL to the process group at once; closes the log. Idempotent."""
        self.kill()
        self._log.close()

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocustProcess(ChildProcess):
    """A real ``locust`` process (``python -m locust`` with ``args``); see :class:`ChildProcess`."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None, name: str = "locust") -> None:
        super().__init__([sys.executable, "-m", "locust", *args], cwd, env, name)


@contextmanager
def locust(args: list[str], cwd: Path, env: dict[str, str] | None = None, name: str = "locust") -> Iterator[LocustProcess]:
    """Run a Locust process for the duration of a ``with`` block; it is always killed at the end."""
    with LocustProcess(args, cwd, env, name) as process:
        yield process


def run_locust(args: list[str], cwd: Path, timeout: float = 60, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run Locust to completion; returns (exit code, combined output)."""
    with locust(args, cwd, env) as process:
        code = process.wait(timeout)
        return code, process.output()


def start_demo_target(port: int, workdir: Path) -> ChildProcess:
    """Start ``examples/demo_target.py`` on 127.0.0.1:``port`` (log: ``workdir/demo_target.log``) and wait until
    ``/health`` answers; raises ``TimeoutError`` (the process stopped) if it does not within 20 s."""
    process = ChildProcess(
        [sys.executable, str(REPO / "examples" / "demo_target.py"), "--host", "127.0.0.1", "--port", str(port)],
        workdir, name="demo_target",
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=20)
    except BaseException:
        process.close()
        raise
    return process
