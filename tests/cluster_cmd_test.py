#!/usr/bin/env python3
"""`maroon cluster start|stop --dir D --id N` on a real local cluster
(docs/cluster.md, "On one machine"): one node is stopped and started again
and `cluster down` still knows it (before, a node restarted by hand was left
serving: "was not running"); a second start of a running node is refused;
a node whose data directory was removed is started again, rejoins the
cluster (never bootstrapping a new one) and has its peers' state."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

from maroon_proc import DevTestCase, http_ports, run_tests


def run(*args, timeout=120):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def status(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/v1/status" % port, timeout=5) as r:
        return json.load(r)


class ClusterStartStop(unittest.TestCase):
    def setUp(self):
        self.maroon = DevTestCase.MAROON
        self.dir = tempfile.mkdtemp(prefix="maroon-cluster-cmd-")
        r = run(self.maroon, "cluster", "up", "--dir", self.dir, "--nodes", "3")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.ports = http_ports(os.path.join(self.dir, "cluster.toml"))
        self.assertEqual(sorted(self.ports), [1, 2, 3])

    def tearDown(self):
        run(self.maroon, "cluster", "down", "--dir", self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    def pid(self, node):
        with open(os.path.join(self.dir, "node-%d.pid" % node)) as f:
            return int(f.read())

    def test_stop_and_start_one_node(self):
        old = self.pid(2)
        r = run(self.maroon, "cluster", "stop", "--dir", self.dir, "--id", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("stopped node 2", r.stdout)
        with self.assertRaises(ProcessLookupError):
            deadline = time.time() + 10
            while time.time() < deadline:  # until init reaps it
                os.kill(old, 0)
                time.sleep(0.05)
        r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", "2")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("node 2 serves", r.stdout)
        self.assertNotEqual(self.pid(2), old)
        self.assertTrue(status(self.ports[2])["serving"])
        r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", "2")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("running already", r.stderr)
        r = run(self.maroon, "cluster", "stop", "--dir", self.dir, "--id", "9")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("has no node 9", r.stderr)
        # `cluster down` stops the node started by hand too.
        r = run(self.maroon, "cluster", "down", "--dir", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("stopped node 2", r.stdout)
        self.assertNotIn("was not running", r.stdout)

    def test_a_node_without_its_data_directory_rejoins(self):
        r = run(self.maroon, "cluster", "stop", "--dir", self.dir, "--id", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        shutil.rmtree(os.path.join(self.dir, "node-3"))
        r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", "3")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("it rejoins the cluster", r.stdout)
        with open(os.path.join(self.dir, "node-3.log")) as f:
            log = f.read()
        last_start = log[log.rfind("=== "):]
        self.assertNotIn("--new-cluster", last_start.splitlines()[0])
        self.assertIn("so it rejoins its cluster", last_start)
        # Its state catches up with node 1's.
        deadline = time.time() + 60
        while True:
            s1, s3 = status(self.ports[1]), status(self.ports[3])
            if (s1["applied_epoch"] == s3["applied_epoch"] and
                    s1["state_hash"] == s3["state_hash"] and s3["serving"]):
                break
            self.assertLess(time.time(), deadline, "node 3 never caught up: %s %s" % (s1, s3))
            time.sleep(0.1)


if __name__ == "__main__":
    run_tests()
