#!/usr/bin/env python3
"""Client connection and buffer bounds against a real `maroon dev` process:
running out of descriptors is answered, never a hang (docs/architecture.md,
"Client connections and buffers")."""
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

from maroon_proc import Dev, Resp, run_tests, DevTestCase


def metric(text, name):
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class LimitedDev(Dev):
    """`maroon dev` with a fixed open-file limit and extra flags."""

    def __init__(self, binary, work, nofile, extra):
        super().__init__(binary, work + "/data", work + "/maroon.log")
        self.nofile = nofile
        self.extra = extra

    def start(self, timeout=30.0):
        log = open(self.log_path, "ab")

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

        env = dict(os.environ)
        if env.get("MAROON_SANITIZED"):
            # ASan keeps freed blocks in a quarantine (256 MB by default),
            # which would count in RSS; keep it small.
            env["ASAN_OPTIONS"] = ":".join(
                x for x in (env.get("ASAN_OPTIONS", ""), "quarantine_size_mb=16") if x)
        self.proc = subprocess.Popen(
            [self.binary, "dev", "--data-dir", self.data_dir,
             "--http-port", str(self.http_port), "--resp-port", str(self.resp_port),
             "--native-port", str(self.native_port)] + self.extra,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=limit,
            env=env)
        log.close()
        self.wait_serving(timeout)


class DescriptorLimitTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="maroon-limits-")
        self.dev = None
        self.socks = []
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4096 <= hard or (soft < 4096 and hard == resource.RLIM_INFINITY):
            resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
        self.assertGreaterEqual(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 2200,
                                "the test needs 2,200 descriptors of its own")

    def tearDown(self):
        for s in self.socks:
            s.close()
        if self.dev:
            self.dev.terminate()
        shutil.rmtree(self.work, ignore_errors=True)

    def http(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.dev.http_port, path),
                                    timeout=5) as r:
            return r.status, r.read().decode()

    def test_idle_connections_beyond_the_descriptor_limit_are_refused_not_hung(self):
        self.dev = LimitedDev(DevTestCase.MAROON, self.work, 1024, [])
        self.dev.start()
        # 2,000 idle RESP connections against a limit of 1,024 descriptors.
        refused = 0
        for _ in range(2000):
            s = socket.create_connection(("127.0.0.1", self.dev.resp_port), timeout=10)
            self.socks.append(s)
        # Those past the maximum are told why and closed, at once.
        deadline = time.monotonic() + 20
        while (metric(self.http("/metrics")[1], "maroon_client_connections_refused_total") or 0) < 900:
            self.assertLess(time.monotonic(), deadline, "connections were not refused")
            time.sleep(0.05)
        time.sleep(0.2)  # the refusals' writes
        for s in self.socks:
            s.setblocking(False)
            try:
                data = s.recv(200, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if data.startswith(b"-ERR max number of clients reached"):
                refused += 1
        self.assertGreater(refused, 900)
        # A new RESP client gets an answer, not a hang...
        r = Resp(self.dev.resp_port, timeout=5)
        with self.assertRaises(Resp.Error) as e:
            r.call("PING")
        self.assertIn("max number of clients reached", str(e.exception))
        r.close()
        # ...and HTTP keeps slots of its own: status and metrics answer.
        self.assertEqual(self.http("/v1/status")[0], 200)
        _, text = self.http("/metrics")
        self.assertGreater(metric(text, "maroon_client_connections_refused_total") or 0, 900)
        self.assertLessEqual(metric(text, "maroon_client_connections"), 1024)
        # Room again once the idle ones go.
        for s in self.socks:
            s.close()
        self.socks = []
        deadline = time.monotonic() + 10
        while True:
            try:
                r = Resp(self.dev.resp_port, timeout=5)
                self.assertEqual(r.call("PING"), "PONG")
                r.close()
                break
            except Resp.Error:
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.1)
        with open(self.dev.log_path) as f:
            log = f.read()
        self.assertIn("file descriptors: 1024", log)
        self.assertIn("resp port refused a connection", log)


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class BufferBudgetTest(unittest.TestCase):
    BUDGET_MB = 64
    READERS = 200

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="maroon-budget-")
        self.socks = []
        self.dev = LimitedDev(DevTestCase.MAROON, self.work, 4096,
                              ["--client-buffer-mb", str(self.BUDGET_MB)])
        self.dev.start()

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.dev.terminate()
        shutil.rmtree(self.work, ignore_errors=True)

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.dev.http_port,
                                    timeout=5) as r:
            return r.read().decode()

    def test_clients_that_never_read_cannot_take_memory_past_the_budget(self):
        value = "v" * (1 << 20)
        r = Resp(self.dev.resp_port)
        self.assertEqual(r.call("SET", "big", value), "OK")
        r.close()
        request = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 8
        for _ in range(self.READERS):
            s = socket.create_connection(("127.0.0.1", self.dev.resp_port), timeout=10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(request)
            self.socks.append(s)
        # Wait until the server has taken all it will: the budget is spent
        # and the refusals stop growing.
        deadline = time.monotonic() + 60
        limit = self.BUDGET_MB * (1 << 20) + 100 * 1000 * 1000
        if os.environ.get("MAROON_SANITIZED"):
            # ASan's shadow memory and quarantine are not the server's buffers;
            # the figure that matters is from a build without sanitizers.
            limit += 300 * 1000 * 1000
        last = -1
        while True:
            rss = rss_bytes(self.dev.proc.pid)
            self.assertLessEqual(rss, limit, "RSS %.1f MB" % (rss / 1e6))
            text = self.metrics()
            refusals = metric(text, "maroon_client_budget_refusals_total") or 0
            if refusals > 0 and refusals == last:
                break
            last = refusals
            self.assertLess(time.monotonic(), deadline, "the budget was never spent")
            time.sleep(0.5)
        rss = rss_bytes(self.dev.proc.pid)
        print("RSS with %d non-reading clients of a 1 MiB value, budget %d MiB: %.1f MB"
              % (self.READERS, self.BUDGET_MB, rss / 1e6))
        self.assertLessEqual(rss, limit)
        self.assertLessEqual(metric(text, "maroon_client_buffered_bytes"), self.BUDGET_MB << 20)
        # Small requests still work; the big value comes back once the
        # non-readers are gone.
        r = Resp(self.dev.resp_port)
        self.assertEqual(r.call("PING"), "PONG")
        for s in self.socks:
            s.close()
        self.socks = []
        deadline = time.monotonic() + 10
        while metric(self.metrics(), "maroon_client_buffered_bytes") > 8 << 20:
            self.assertLess(time.monotonic(), deadline, "the budget was not given back")
            time.sleep(0.1)
        self.assertEqual(r.call("GET", "big"), value)
        r.close()


if __name__ == "__main__":
    run_tests()
