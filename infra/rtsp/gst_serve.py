"""A GStreamer RTSP server for local tests and benchmarks: run by Debian's python3 (python3-gi),
never imported by the project (which runs in its own virtual environment without GObject).

    python3 gst_serve.py --port 8554 --user U --password P MOUNT=FILE.mp4 [MOUNT=FILE.mp4 ...]

Each mount serves its H.264 recording at the recording's own rate (the server paces RTP by the
pipeline clock), without re-encoding. Every client gets its own pipeline from the first frame: a
clip that ends closes the session, and a client that connects again sees it start over, as a
camera that restarts its stream does. Basic authentication is required on every mount. Prints
`ready PORT` once listening; SIGTERM stops it.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ROLE = "camera-client"


def _quit(loop):
    loop.quit()
    return GLib.SOURCE_REMOVE


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("mounts", nargs="+", help="MOUNT=FILE: /path on the server = recording")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", ROLE)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role(ROLE, "media.factory.access", True)
    permissions.add_permission_for_role(ROLE, "media.factory.construct", True)
    mounts = server.get_mount_points()
    for spec in args.mounts:
        mount, _, path = spec.partition("=")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f'( filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1'
            " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        factory.set_permissions(permissions)
        mounts.add_factory(mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    loop = GLib.MainLoop()
    # GLib's own handlers: Python's run only when the interpreter gets control back
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, _quit, loop)
    print(f"ready {args.port}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
