"""The server a client test talks to, on a free loopback port.

Normally a fresh `maroon dev`. With --redis-server, a stock redis-server
instead: every client test must pass there too, which is how a test is shown
to check Redis's behaviour and not an accident of maroon's.
"""
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from maroon_proc import Dev, free_port  # noqa: E402

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def add_server_args(ap):
    """--maroon BINARY or --redis-server BINARY, exactly one."""
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--maroon", help="the maroon binary to start as `maroon dev`")
    g.add_argument("--redis-server", help="a redis-server binary, to check the tests themselves")


class RedisServer:
    """redis-server with persistence off, on 127.0.0.1 only."""

    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.resp_port = free_port()
        self.proc = None

    def start(self):
        log = open(os.path.join(self.work, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.resp_port), "--bind", "127.0.0.1", "--dir", self.work,
             "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s; see %s/redis.log" % (self.proc.returncode, self.work))
            try:
                with socket.create_connection(("127.0.0.1", self.resp_port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within %.0f s" % START_TIMEOUT_S)

    def terminate(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None


@contextlib.contextmanager
def server_under_test(args):
    """Starts the server that `args` (from add_server_args) names; yields its RESP port."""
    work = tempfile.mkdtemp(prefix="maroon-clients-")
    if args.maroon:
        server = Dev(args.maroon, os.path.join(work, "data"), os.path.join(work, "maroon.log"))
        name, log = "maroon dev", os.path.join(work, "maroon.log")
    else:
        server = RedisServer(args.redis_server, work)
        name, log = "redis-server", os.path.join(work, "redis.log")
    try:
        server.start()
        print("server under test: %s on 127.0.0.1:%d" % (name, server.resp_port), flush=True)
        yield server.resp_port
    except BaseException:
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                tail = f.read()[-4000:]
            print("--- last lines of the %s log ---\n%s" % (name, tail), flush=True)
        raise
    finally:
        server.terminate()
        shutil.rmtree(work, ignore_errors=True)
