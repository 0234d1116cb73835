"""The app served by `streamlit run app.py` on a free local port: one launcher for the browser tests and the
screenshot script (tests/test_browser.py, scripts/screenshots.py).

    with running_app(index) as url:   # "http://127.0.0.1:PORT", healthy
        ...
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A page is drawn when no element of the previous run (data-stale), placeholder (skeleton) or running icon is left.
IDLE = (
    '() => !document.querySelector(\'[data-stale="true"], [data-testid="stSkeletonElement"], '
    '[data-testid="stStatusWidgetRunningIcon"]\')'
)


def free_port() -> int:
    """A local TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_command(port: int) -> list[str]:
    """`streamlit run app.py` headless on 127.0.0.1:port, no file watcher, no usage statistics."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
    ]


@contextlib.contextmanager
def running_app(index: Path | None = None, seconds: float = 120) -> Iterator[str]:
    """Start the app (on `index`, else the shipped one) and yield its URL once healthy; stop it on leaving.

    Raises:
        RuntimeError: the app exited or was not healthy within `seconds`; the message ends with its log.
    """
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if index is not None:
        env["KB_INDEX"] = str(index)
    # The log goes to a file: a pipe nobody reads fills up and blocks the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(app_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + seconds
            while not _healthy(url):
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"streamlit did not start at {url}:\n{tail}")
                time.sleep(0.3)
            yield url
        finally:
            stop_process(proc, 10)


def stop_process(proc: subprocess.Popen, seconds: float) -> None:
    """Ask a server to stop, and kill it if it has not within `seconds`."""
    proc.terminate()
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return bool(r.read() == b"ok")
    except OSError:
        return False
