#!/usr/bin/env python3
"""The out-of-tree example, examples/hello-app, built exactly as a user
builds a program with apps of its own (docs/apps.md): `cmake --install` of
this build into a fresh prefix, then `find_package(maroon)` from the
example's own CMake project. The program it makes then runs its "hello" app
as a single node (restarts and a snapshot keep its state) and as a 3-node
cluster (every node answers from the same state, a node killed and started
again catches up), with the built-in kv app beside it."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from maroon_proc import Dev, http_ports

BUILD_DIR = None
SOURCE_DIR = None
WORK = None
HELLO = None  # the example's binary, built once for every test


def run(*args, timeout=300, cwd=None):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def post(port, path, body=b"", timeout=10):
    """(HTTP status, response body bytes)."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def get_json(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return json.load(r)


def build_example():
    """Installs this build into WORK/prefix and builds the example there."""
    prefix = os.path.join(WORK, "prefix")
    r = run("cmake", "--install", BUILD_DIR, "--prefix", prefix)
    if r.returncode != 0:
        raise RuntimeError("cmake --install failed:\n" + r.stdout + r.stderr)
    for f in ("include/maroon/maroon.h", "include/maroon/state_machine.h",
              "lib/cmake/maroon/maroonConfig.cmake", "bin/maroon"):
        if not os.path.exists(os.path.join(prefix, f)):
            raise RuntimeError("cmake --install did not install " + f)
    # The example's folder copied elsewhere: it must not reach into the tree.
    src = os.path.join(WORK, "hello-app")
    shutil.copytree(os.path.join(SOURCE_DIR, "examples", "hello-app"), src)
    build = os.path.join(WORK, "hello-build")
    r = run("cmake", "-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
            "-DCMAKE_PREFIX_PATH=" + prefix)
    if r.returncode != 0:
        raise RuntimeError("configuring the example failed:\n" + r.stdout + r.stderr)
    r = run("cmake", "--build", build, timeout=600)
    if r.returncode != 0:
        raise RuntimeError("building the example failed:\n" + r.stdout + r.stderr)
    return os.path.join(build, "hello-app")


class Tutorial(unittest.TestCase):
    def test_docs_show_the_example_files(self):
        """docs/apps.md shows examples/hello-app's files whole: what the
        tutorial tells a reader to write is what this test builds."""
        with open(os.path.join(SOURCE_DIR, "docs", "apps.md")) as f:
            lines = f.read().split("\n")
        shown = {}
        for i, line in enumerate(lines):
            if line.startswith("<!-- file: "):
                name = line[len("<!-- file: "):-len(" -->")]
                self.assertTrue(lines[i + 1].startswith("```"), name)
                end = lines.index("```", i + 2)
                shown[name] = "\n".join(lines[i + 2:end]) + "\n"
        example = os.path.join(SOURCE_DIR, "examples", "hello-app")
        self.assertEqual(sorted(shown), sorted(os.listdir(example)))
        for name, text in shown.items():
            with open(os.path.join(example, name)) as f:
                self.assertEqual(text, f.read(), "docs/apps.md shows another " + name)


class SingleNode(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hello-single-", dir=WORK)
        self.dev = Dev(HELLO, self.dir + "/data", self.dir + "/node.log")
        self.dev.start()

    def tearDown(self):
        self.dev.terminate()

    def call(self, op, read=False):
        return post(self.dev.http_port, "/v1/apps/hello" + ("/read" if read else ""),
                    op.encode())

    def test_lists_its_apps(self):
        r = run(HELLO, "apps")
        self.assertEqual(r.returncode, 0, r.stderr)
        names = [line.split()[0] for line in r.stdout.splitlines()]
        self.assertEqual(names, ["kv", "hello"])
        served = get_json(self.dev.http_port, "/v1/apps")["apps"]
        self.assertEqual([a["name"] for a in served], ["kv", "hello"])

    def test_greets_counts_and_keeps_state_across_restarts(self):
        self.assertEqual(self.call("greet ada"), (200, b"hello, ada (greeting #1)"))
        self.assertEqual(self.call("greet ada"), (200, b"hello, ada (greeting #2)"))
        self.assertEqual(self.call("greet bob"), (200, b"hello, bob (greeting #1)"))
        self.assertEqual(self.call("count ada", read=True), (200, b"2"))
        self.assertEqual(self.call("count nobody", read=True), (200, b"0"))
        # The CLI's generic client.
        r = run(HELLO, "call", "hello", "count ada", "--read", "--http-port",
                str(self.dev.http_port))
        self.assertEqual((r.returncode, r.stdout), (0, "2\n"), r.stderr)
        # The kv app runs beside it.
        req = urllib.request.Request("http://127.0.0.1:%d/v1/kv/k" % self.dev.http_port,
                                     data=b"v", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:
            self.assertEqual(resp.status, 200)
        # Restart: the WAL replays into the app.
        self.dev.terminate()
        self.dev.start()
        self.assertEqual(self.call("count ada", read=True), (200, b"2"))
        # A snapshot, then more, then a restart from the snapshot and the tail.
        status, _ = post(self.dev.http_port, "/v1/admin/snapshot")
        self.assertEqual(status, 202)
        deadline = time.monotonic() + 30
        while get_json(self.dev.http_port, "/v1/status")["snapshot"]["taken"] < 1:
            self.assertLess(time.monotonic(), deadline, "no snapshot was taken")
            time.sleep(0.05)
        self.assertEqual(self.call("greet ada"), (200, b"hello, ada (greeting #3)"))
        hash_before = get_json(self.dev.http_port, "/v1/status")["state_hash"]
        self.dev.terminate()
        self.dev.start()
        self.assertEqual(self.call("count ada", read=True), (200, b"3"))
        self.assertEqual(self.call("count bob", read=True), (200, b"1"))
        self.assertEqual(get_json(self.dev.http_port, "/v1/status")["state_hash"], hash_before)
        with open(self.dir + "/node.log") as f:
            self.assertIn("restored snapshot", f.read())

    def test_bad_requests_get_clear_errors(self):
        status, body = post(self.dev.http_port, "/v1/apps/nosuch", b"greet x")
        self.assertEqual(status, 404)
        err = json.loads(body)
        self.assertIn('unknown app "nosuch"', err["error"])
        self.assertIn("kv, hello", err["error"])
        # The app's own errors are replies; nothing changes.
        self.assertEqual(self.call("wave ada")[1], b'error: unknown op "wave"')
        self.assertEqual(self.call("greet " + "x" * 300)[1],
                         b"error: a name of more than 256 bytes")
        self.assertEqual(self.call("greet ada", read=True)[1], b'error: only "count NAME" reads')
        self.assertEqual(self.call("count ada", read=True), (200, b"0"))
        r = run(HELLO, "call", "nosuch", "x", "--http-port", str(self.dev.http_port))
        self.assertEqual(r.returncode, 1)
        self.assertIn('unknown app "nosuch"', r.stderr)
        r = run(HELLO, "call", "Bad App", "x", "--http-port", str(self.dev.http_port))
        self.assertEqual(r.returncode, 2)
        self.assertIn("not an app name", r.stderr)


class ThreeNodes(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hello-cluster-", dir=WORK)
        r = run(HELLO, "cluster", "up", "--dir", self.dir, "--nodes", "3")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.ports = http_ports(os.path.join(self.dir, "cluster.toml"))
        self.assertEqual(sorted(self.ports), [1, 2, 3])

    def tearDown(self):
        r = run(HELLO, "cluster", "down", "--dir", self.dir)
        self.assertNotIn("was not running", r.stdout)

    def greet(self, node, name):
        deadline = time.monotonic() + 30
        while True:
            status, body = post(self.ports[node], "/v1/apps/hello", ("greet " + name).encode())
            if status == 200:
                return body
            self.assertLess(time.monotonic(), deadline, (status, body))
            time.sleep(0.1)

    def wait_equal(self, nodes):
        deadline = time.monotonic() + 60
        while True:
            st = [get_json(self.ports[n], "/v1/status") for n in nodes]
            if len({(s["applied_epoch"], s["state_hash"]) for s in st}) == 1:
                return
            self.assertLess(time.monotonic(), deadline, st)
            time.sleep(0.05)

    def test_every_node_runs_the_app(self):
        self.assertEqual(self.greet(1, "ada"), b"hello, ada (greeting #1)")
        self.assertEqual(self.greet(2, "ada"), b"hello, ada (greeting #2)")
        self.assertEqual(self.greet(3, "ada"), b"hello, ada (greeting #3)")
        self.wait_equal([1, 2, 3])
        for n in (1, 2, 3):
            self.assertEqual(post(self.ports[n], "/v1/apps/hello/read", b"count ada"),
                             (200, b"3"), "node %d" % n)
        # A node killed and started again catches up through its peers.
        with open(os.path.join(self.dir, "node-3.pid")) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        for i in range(4, 8):
            self.assertEqual(self.greet(1, "ada"), ("hello, ada (greeting #%d)" % i).encode())
        r = run(HELLO, "cluster", "start", "--dir", self.dir, "--id", "3")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait_equal([1, 2, 3])
        self.assertEqual(post(self.ports[3], "/v1/apps/hello/read", b"count ada"), (200, b"7"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    args, rest = ap.parse_known_args()
    BUILD_DIR, SOURCE_DIR = args.build_dir, args.source_dir
    WORK = tempfile.mkdtemp(prefix="maroon-hello-app-")
    try:
        HELLO = build_example()
        result = unittest.main(argv=[sys.argv[0]] + rest, verbosity=2, exit=False).result
        ok = result.wasSuccessful()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(0 if ok else 1)
