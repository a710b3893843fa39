"""Starts and stops real `maroon dev` processes for the process-level tests.

Servers listen on 127.0.0.1 only, on free ports chosen here. Waits are on
conditions with deadlines, never bare sleeps.
"""
import argparse
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dev:
    """`maroon dev`; with tls_ca (the CA file clients trust, made by
    `maroon dev --tls` in extra_args) it is probed over HTTPS; with token (a
    user's password, when extra_args give it users) with that bearer token."""

    def __init__(self, binary, data_dir, log_path, extra_args=(), tls_ca=None, token=None,
                 env=None):
        self.binary = binary
        self.env = env  # the process's environment; None: this one's
        self.data_dir = data_dir
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.tls_ca = tls_ca
        self.token = token
        self.http_port = free_port()
        self.resp_port = free_port()
        self.native_port = free_port()
        self.proc = None

    def start(self, timeout=30.0):
        # free_port() cannot reserve a port: another process may take it
        # before maroon binds it (tests run in parallel, and every outgoing
        # connection takes an ephemeral port). Such a start is retried on
        # new ports; any other failure is the test's.
        for attempt in range(3):
            offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [self.binary, "dev", "--data-dir", self.data_dir,
                 "--http-port", str(self.http_port), "--resp-port", str(self.resp_port),
                 "--native-port", str(self.native_port)] + self.extra_args,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
            log.close()
            try:
                self.wait_serving(timeout)
                return
            except RuntimeError:
                if attempt == 2 or self.proc.poll() is None or not self.port_taken(offset):
                    raise
            self.http_port, self.resp_port, self.native_port = free_port(), free_port(), free_port()

    def port_taken(self, offset):
        """Whether the log written since `offset` says a port was taken."""
        with open(self.log_path, errors="replace") as f:
            f.seek(offset)
            return "already in use" in f.read()

    def wait_serving(self, timeout=30.0):
        """Waits until the process answers /v1/status with 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("maroon dev exited with %s; the end of %s:\n%s"
                                   % (self.proc.returncode, self.log_path, self.log_tail()))
            try:
                if self.tls_ca:
                    url = "https://localhost:%d/v1/status" % self.http_port
                    context = ssl.create_default_context(cafile=self.tls_ca)
                else:
                    url = "http://127.0.0.1:%d/v1/status" % self.http_port
                    context = None
                req = urllib.request.Request(url)
                if self.token:
                    req.add_header("Authorization", "Bearer " + self.token)
                with urllib.request.urlopen(req, timeout=1, context=context) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.02)
        raise RuntimeError("maroon dev did not serve within %.0f s; the end of %s:\n%s"
                           % (timeout, self.log_path, self.log_tail()))

    def log_tail(self, lines=30):
        """The last lines of the process's log, for a failure's message (the
        test's folder is gone once the test ends)."""
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(unreadable: %s)" % e

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def terminate(self, timeout=30.0):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            code = self.proc.wait(timeout=timeout)
            self.proc = None
            return code
        self.proc = None
        return None


class Resp:
    """A minimal RESP2 client: enough for tests, raises on -ERR replies."""

    class Error(Exception):
        pass

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise Resp.Error(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError("bad reply line %r" % line)

    def call(self, *args):
        self.send(*args)
        return self.read()


def http_ports(config):
    """node id -> http port, from the cluster.toml `cluster up` wrote."""
    ports, node = {}, None
    with open(config) as f:
        lines = f.read().splitlines()
    for line in lines:
        line = line.strip()
        if line == "[[nodes]]":
            node = {}
        elif node is not None and "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            if key in ("id", "http_port"):
                node[key] = int(value)
            if "id" in node and "http_port" in node:
                ports[node["id"]] = node["http_port"]
                node = None
    return ports


class DevTestCase(unittest.TestCase):
    """A test class sharing one `maroon dev` process across its tests."""

    MAROON = None  # the binary, set by run_tests()
    WORK_PREFIX = "maroon-test-"

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix=cls.WORK_PREFIX)
        cls.dev = Dev(cls.MAROON, cls.work + "/data", cls.work + "/maroon.log")
        cls.dev.start()

    @classmethod
    def tearDownClass(cls):
        cls.dev.terminate()
        shutil.rmtree(cls.work, ignore_errors=True)


def run_tests():
    """unittest.main with a required --maroon BINARY argument."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--maroon", required=True)
    args, rest = ap.parse_known_args()
    DevTestCase.MAROON = args.maroon
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
