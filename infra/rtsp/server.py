"""A real RTSP server on loopback for the live-camera tests and `bench live`.

GStreamer's RTSP server (Debian's `gir1.2-gst-rtsp-server-1.0`) runs `gst_serve.py` under the
system's python3, which has GObject (python3-gi); the project's virtual environment does not need
it. The server serves H.264 recordings at their own rate with basic authentication, one mount per
camera. Where the packages are missing, `unavailable()` says in one line what to install.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from infra.processes import free_port, port_open, wait_until

SYSTEM_PYTHON = "/usr/bin/python3"
SERVE_SCRIPT = Path(__file__).with_name("gst_serve.py")
DEBIAN_PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-good",  # qtdemux, rtph264pay
    "gstreamer1.0-plugins-bad",  # h264parse
)
ELEMENTS = ("filesrc", "qtdemux", "h264parse", "rtph264pay")
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0

_PROBE = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
    "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
    "missing = [e for e in {elements!r} if Gst.ElementFactory.find(e) is None];"
    "print(' '.join(missing))"
)


@functools.cache
def unavailable() -> str | None:
    """None when a GStreamer RTSP server can run here, else why not and what to install."""
    hint = f"install Debian's {' '.join(DEBIAN_PACKAGES)}"
    if not Path(SYSTEM_PYTHON).is_file():
        return f"no {SYSTEM_PYTHON} to run GStreamer's RTSP server: {hint}"
    try:
        done = subprocess.run(  # noqa: S603 - the system python with a fixed probe
            [SYSTEM_PYTHON, "-c", _PROBE.format(elements=ELEMENTS)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot probe GStreamer ({exc}): {hint}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"GStreamer's RTSP server is not importable ({last}): {hint}"
    if done.stdout.strip():
        return f"GStreamer elements missing ({done.stdout.strip()}): {hint}"
    return None


class RtspServer:
    """GStreamer's RTSP server on 127.0.0.1, serving `clips` ({mount: recording}); a context
    manager. `stop()`/`kill()` and `start()` again keep the same port, so clients reconnect to
    the same URLs (a camera that went away and came back)."""

    def __init__(
        self,
        clips: Mapping[str, Path],
        *,
        user: str = "viewer",
        password: str = "cctv-pass",  # noqa: S107 - a loopback server for tests and benchmarks
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        self.clips = {("/" + m.lstrip("/")): Path(p).resolve() for m, p in clips.items()}
        for path in self.clips.values():
            if not path.is_file():
                raise FileNotFoundError(f"no such recording: {path}")
        self.user = user
        self.password = password
        self.port = port or free_port()
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, mount: str, *, user: str | None = None, password: str | None = None) -> str:
        """rtsp://user:password@127.0.0.1:PORT/mount (the server's credentials by default)."""
        user = self.user if user is None else user
        password = self.password if password is None else password
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}/{mount.lstrip('/')}"

    def start(self) -> RtspServer:
        if self.running:
            return self
        command = [
            SYSTEM_PYTHON,
            str(SERVE_SCRIPT),
            "--port",
            str(self.port),
            "--user",
            self.user,
            "--password",
            self.password,
            *(f"{mount}={path}" for mount, path in self.clips.items()),
        ]
        # the system python, not ours: drop the virtual environment's variables
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        with contextlib.ExitStack() as files:
            out: IO[bytes] | int = subprocess.DEVNULL
            if self._log_path is not None:
                self._log_path.parent.mkdir(parents=True, exist_ok=True)
                out = files.enter_context(self._log_path.open("ab"))
            self._process = subprocess.Popen(  # noqa: S603 - this repository's server script
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        if not wait_until(self._listening, START_TIMEOUT_S, 0.05):
            code = self._process.poll()
            self.kill()
            raise RuntimeError(
                f"the RTSP server did not listen on 127.0.0.1:{self.port} within "
                f"{START_TIMEOUT_S:.0f} s (exit code {code})"
            )
        return self

    def _listening(self) -> bool:
        process = self._process
        if process is None or process.poll() is not None:
            return True  # gave up: start() reports it
        return port_open("127.0.0.1", self.port, 0.2)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; waits until the port is free."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-stream, as a camera that loses power."""
        self._end(signal.SIGKILL)

    def _end(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        wait_until(lambda: not port_open("127.0.0.1", self.port, 0.1), STOP_TIMEOUT_S, 0.05)

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def looped_recording(source: Path, target: Path, times: int) -> Path:
    """`source` played `times` times back to back, as one recording (its H.264 packets copied
    with shifted timestamps, not re-encoded): a clip long enough for a timed live run."""
    import av

    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial.mp4")
    with av.open(str(source)) as clip, av.open(str(partial), "w", format="mp4") as out:
        stream = clip.streams.video[0]
        time_base = stream.time_base
        if time_base is None:
            raise ValueError(f"{source}: its video stream has no time base")
        packets = [
            (bytes(p), p.pts, p.dts, p.duration, p.is_keyframe)
            for p in clip.demux(stream)
            if p.dts is not None
        ]
        if len(packets) < 2:
            raise ValueError(f"{source} has fewer than two video packets")
        step = packets[1][2] - packets[0][2]
        span = packets[-1][2] - packets[0][2] + step  # one play's length, in the stream's units
        copy = out.add_stream_from_template(stream)
        for k in range(times):
            for data, pts, dts, duration, keyframe in packets:
                packet = av.Packet(data)
                packet.stream = copy
                packet.time_base = time_base
                packet.dts = dts + k * span
                packet.pts = None if pts is None else pts + k * span
                packet.duration = duration
                packet.is_keyframe = keyframe
                out.mux(packet)
    partial.replace(target)
    return target
