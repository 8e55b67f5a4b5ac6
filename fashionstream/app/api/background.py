"""The API as a background process of the local run: `fashionstream demo` starts it (or reuses
the one already serving) so its data can be queried after the demo returns, and
`fashionstream down` stops it with the stack. Its pid is kept in the state dir; a pid is only
signalled when its command line is still this API's."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fashionstream.app.local_run import RunError, settings_env
from fashionstream.core.settings import Settings
from infra.processes import pid_alive, pid_cmdline, tail, terminate, wait_until

API_COMMAND = (sys.executable, "-m", "fashionstream", "api")


@dataclass(frozen=True)
class BackgroundApi:
    url: str
    pid: int | None  # None: an API that this state dir did not start was already serving
    started: bool  # False: reused
    log_file: Path


def api_url(settings: Settings) -> str:
    host = settings.api_host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - only naming the address to call it on
        host = "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.api_port}"


def ensure_api(settings: Settings, timeout_s: float = 60.0) -> BackgroundApi:
    """The API at `api_url(settings)`: the one already answering there, else a new detached
    `fashionstream api` process. Raises RunError when it does not come up."""
    url = api_url(settings)
    log_file = settings.state_dir / "logs" / "api.log"
    pid_file = _pid_file(settings)
    if _answers(url):
        return BackgroundApi(url, _our_pid(pid_file), started=False, log_file=log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - this repository's own command
            API_COMMAND,
            env=settings_env(settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the demo, like the stack
        )
    pid_file.write_text(str(process.pid))
    up = wait_until(lambda: _answers(url) or process.poll() is not None, timeout_s, 0.2)
    if not up or process.poll() is not None:
        terminate(process.pid, 10.0)
        pid_file.unlink(missing_ok=True)
        raise RunError(f"the API did not start on {url}; its log ({log_file}):\n{tail(log_file)}")
    return BackgroundApi(url, process.pid, started=True, log_file=log_file)


def stop_api(settings: Settings, timeout_s: float = 20.0) -> bool | None:
    """Stops the API this state dir started. None: none was running; else whether it stopped."""
    pid_file = _pid_file(settings)
    pid = _our_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return None
    stopped = terminate(pid, timeout_s)
    if stopped:
        pid_file.unlink(missing_ok=True)
    return stopped


def _pid_file(settings: Settings) -> Path:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return settings.state_dir / "api.pid"


def _our_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    cmdline = pid_cmdline(pid) or []
    if pid_alive(pid) and cmdline[-3:] == list(API_COMMAND[-3:]):
        return pid
    return None


def _answers(url: str) -> bool:
    """True when a fashionstream API answers its health check (healthy or not)."""
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=3) as response:  # noqa: S310 - http(s) only
            body = response.read()
    except urllib.error.HTTPError as exc:  # 503: serving, Kafka or Postgres down
        body = exc.read()
    except (OSError, ValueError):
        return False
    try:
        return "checks" in json.loads(body)
    except (ValueError, TypeError):
        return False
