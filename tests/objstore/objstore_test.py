#!/usr/bin/env python3
"""Backups to an object store, against real processes (docs/backups.md).

A local S3-compatible server (s3rver from npm, with SigV4 checked by
tests/objstore/s3_server.js) listens on loopback. `maroon dev` uploads its
snapshots there (multipart for the large ones), `maroon backup` forces one,
`maroon snapshot list|download` read them back, `maroon restore` and
`--bootstrap-from` start new data directories from them; a wrong secret is
refused (and serving goes on), an unreachable store is reported, injected
5xx answers are retried, retention prunes old snapshots, a damaged object
is refused on download. A directory store and a cluster node that
bootstraps from it are tested too."""
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from maroon_proc import Dev, DevTestCase, Resp, free_port, run_tests  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ACCESS_KEY = "maroon-test"
SECRET = "maroon-test-secret"
BUCKET = "backups"


def run(*args, env=None, timeout=180):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def status(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/v1/status" % port, timeout=5) as r:
        return json.load(r)


def wait_for(pred, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


class S3Server:
    """tests/objstore/s3_server.js on a free loopback port."""

    def __init__(self, work):
        self.dir = os.path.join(work, "s3")
        os.makedirs(self.dir)
        port_file = os.path.join(work, "s3.port")
        self.log = open(os.path.join(work, "s3.log"), "ab")
        self.proc = subprocess.Popen(
            # s3rver's continuation tokens use DES, which OpenSSL 3 keeps
            # in its legacy provider.
            ["node", "--openssl-legacy-provider", os.path.join(HERE, "s3_server.js"),
             "--dir", self.dir, "--bucket", BUCKET,
             "--access-key", ACCESS_KEY, "--secret", SECRET, "--port-file", port_file,
             "--list-page", "2"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=HERE)
        wait_for(lambda: os.path.exists(port_file) or self.proc.poll() is not None,
                 "the S3 server to listen", 30)
        if self.proc.poll() is not None:
            raise RuntimeError("the S3 server exited; see %s" % self.log.name)
        with open(port_file) as f:
            self.port = int(f.read())
        self.endpoint = "http://127.0.0.1:%d" % self.port

    def stats(self):
        with urllib.request.urlopen(self.endpoint + "/__stats", timeout=5) as r:
            return json.load(r)

    def fail_next(self, count, status_code=503):
        req = urllib.request.Request("%s/__fail?count=%d&status=%d" % (self.endpoint, count, status_code),
                                     method="POST")
        urllib.request.urlopen(req, timeout=5).read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def fill(port, keys, value_bytes, prefix="k"):
    """SETs `keys` keys of value_bytes each, pipelined; returns one key's value."""
    r = Resp(port, timeout=60)
    value = "v" * value_bytes
    batch = 500
    for start in range(0, keys, batch):
        for i in range(start, min(keys, start + batch)):
            r.send("SET", "%s%d" % (prefix, i), value)
        for i in range(start, min(keys, start + batch)):
            assert r.read() == "OK"
    r.close()
    return value


class S3Backups(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.maroon = DevTestCase.MAROON
        cls.work = tempfile.mkdtemp(prefix="maroon-objstore-")
        cls.s3 = S3Server(cls.work)
        cls.env = dict(os.environ, AWS_ENDPOINT_URL=cls.s3.endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY,
                       AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")

    @classmethod
    def tearDownClass(cls):
        cls.s3.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        self.devs = []

    def tearDown(self):
        for d in self.devs:
            d.terminate()

    def dev(self, name, *args, env=None):
        d = Dev(self.maroon, os.path.join(self.work, name), os.path.join(self.work, name + ".log"),
                extra_args=list(args), env=env or self.env)
        d.start()
        self.devs.append(d)
        return d

    def test_backup_list_download_restore_and_bootstrap(self):
        store = "s3://%s/restore-test" % BUCKET
        d = self.dev("a", "--backup-to", store, "--backup-part-mb", "5",
                     "--backup-interval-s", "3600")
        # About 9 MiB of state: a snapshot larger than one 5 MiB part.
        value = fill(d.resp_port, 60000, 150)
        before = self.s3.stats()
        r = run(self.maroon, "backup", "--http-port", d.http_port, env=self.env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("uploaded to s3://%s/restore-test/" % BUCKET, r.stdout)
        after = self.s3.stats()
        self.assertGreaterEqual(after["parts"] - before["parts"], 2, "not a multipart upload")
        self.assertEqual(after["refused"], before["refused"])
        s = status(d.http_port)["backup"]
        self.assertEqual(s["uploads"], 1)
        self.assertEqual(s["error"], "")
        epoch = s["last_epoch"]

        r = run(self.maroon, "snapshot", "list", "--store", store, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("node-1/snapshot-%020d.msnap" % epoch, r.stdout)

        out = os.path.join(self.work, "downloaded")
        os.makedirs(out)
        r = run(self.maroon, "snapshot", "download", "--store", store, "--to", out, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("verified", r.stdout)
        self.assertEqual(os.path.getsize(os.path.join(out, "snapshot-%020d.msnap" % epoch)),
                         s["last_bytes"])

        # Written after the backup: not in the restored state.
        fill(d.resp_port, 10, 5, prefix="late")
        r = run(self.maroon, "restore", "--from", store, "--data-dir",
                os.path.join(self.work, "restored"), env=self.env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        restored = Dev(self.maroon, os.path.join(self.work, "restored"),
                       os.path.join(self.work, "restored.log"))
        restored.start()
        self.devs.append(restored)
        c = Resp(restored.resp_port)
        self.assertEqual(c.call("DBSIZE"), 60000)
        self.assertEqual(c.call("GET", "k59999"), value)
        self.assertIsNone(c.call("GET", "late0"))
        self.assertEqual(c.call("SET", "after-restore", "1"), "OK")
        c.close()
        # A restart of the restored directory keeps what it wrote since.
        restored.terminate()
        restored.start()
        c = Resp(restored.resp_port)
        self.assertEqual(c.call("GET", "after-restore"), "1")
        self.assertEqual(c.call("DBSIZE"), 60001)
        c.close()
        # Restoring over an existing directory is refused.
        r = run(self.maroon, "restore", "--from", store, "--data-dir",
                os.path.join(self.work, "restored"), env=self.env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("already holds a node's data", r.stderr)

        # `maroon dev --bootstrap-from` on a new directory does the same,
        # with --tls too (which makes DATA-DIR/client-tls first).
        boot_dir = os.path.join(self.work, "boot")
        b = Dev(self.maroon, boot_dir, boot_dir + ".log",
                extra_args=["--tls", "--bootstrap-from", store], env=self.env,
                tls_ca=os.path.join(boot_dir, "client-tls", "ca.crt"))
        b.start()
        self.devs.append(b)
        context = ssl.create_default_context(cafile=os.path.join(boot_dir, "client-tls", "ca.crt"))
        with urllib.request.urlopen("https://localhost:%d/v1/kv/k59999" % b.http_port,
                                    timeout=5, context=context) as r:
            self.assertEqual(r.read().decode(), value)
        with urllib.request.urlopen("https://localhost:%d/v1/status" % b.http_port,
                                    timeout=5, context=context) as r:
            self.assertGreaterEqual(json.load(r)["applied_epoch"], epoch)

        # A directory `maroon restore` prepared (and whose start was cut
        # short) starts from it with --bootstrap-from as well.
        prepared = os.path.join(self.work, "prepared")
        r = run(self.maroon, "restore", "--from", store, "--data-dir", prepared, env=self.env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        p = self.dev("prepared", "--bootstrap-from", store)
        with open(os.path.join(self.work, "prepared.log")) as f:
            self.assertIn("prepared to start from a snapshot already", f.read())
        c = Resp(p.resp_port)
        self.assertEqual(c.call("DBSIZE"), 60000)
        c.close()

    def test_a_wrong_secret_is_refused_and_serving_goes_on(self):
        store = "s3://%s/wrong-secret" % BUCKET
        wrong = dict(self.env, AWS_SECRET_ACCESS_KEY="not-the-secret")
        before = self.s3.stats()
        d = self.dev("wrong", "--backup-to", store, env=wrong)
        fill(d.resp_port, 100, 10)
        r = run(self.maroon, "backup", "--http-port", d.http_port, "--wait", "3", env=self.env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("SignatureDoesNotMatch", r.stderr)
        s = status(d.http_port)
        self.assertTrue(s["serving"])
        self.assertGreaterEqual(s["backup"]["failures"], 1)
        self.assertEqual(s["backup"]["uploads"], 0)
        self.assertIn("SignatureDoesNotMatch", s["backup"]["error"])
        self.assertGreater(self.s3.stats()["refused"], before["refused"])
        c = Resp(d.resp_port)
        self.assertEqual(c.call("SET", "still", "serving"), "OK")
        c.close()
        # The CLI says so too, and nothing was stored.
        r = run(self.maroon, "snapshot", "list", "--store", store, env=wrong)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("SignatureDoesNotMatch", r.stderr)
        r = run(self.maroon, "snapshot", "list", "--store", store, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no snapshots", r.stdout)

    def test_an_unreachable_store_is_reported_and_retried_failures_recover(self):
        dead = dict(self.env, AWS_ENDPOINT_URL="http://127.0.0.1:%d" % free_port())
        d = self.dev("dead", "--backup-to", "s3://%s/dead" % BUCKET, env=dead)
        r = run(self.maroon, "backup", "--http-port", d.http_port, "--wait", "10", env=self.env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is the object store reachable", r.stderr)
        self.assertTrue(status(d.http_port)["serving"])

        # Two injected 503s: the store's own retries get past them.
        d2 = self.dev("flaky", "--backup-to", "s3://%s/flaky" % BUCKET)
        fill(d2.resp_port, 100, 10)
        before = self.s3.stats()
        self.s3.fail_next(2)
        r = run(self.maroon, "backup", "--http-port", d2.http_port, env=self.env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.s3.stats()["injected"] - before["injected"], 2)
        self.assertEqual(status(d2.http_port)["backup"]["failures"], 0)

    def three_backups(self, d):
        """Three `maroon backup`s of d, a few writes before each; their epochs."""
        epochs = []
        for i in range(3):
            fill(d.resp_port, 10, 10, prefix="b%d-" % i)
            r = run(self.maroon, "backup", "--http-port", d.http_port, env=self.env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            epochs.append(status(d.http_port)["backup"]["last_epoch"])
        return epochs

    def test_retention_prunes_the_oldest(self):
        store = "s3://%s/retention" % BUCKET
        d = self.dev("kept", "--backup-to", store, "--backups-kept", "2")
        epochs = self.three_backups(d)
        r = run(self.maroon, "snapshot", "list", "--store", store, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("%020d" % epochs[0], r.stdout)
        self.assertIn("%020d" % epochs[1], r.stdout)
        self.assertIn("%020d" % epochs[2], r.stdout)
        self.assertEqual(status(d.http_port)["backup"]["pruned"], 1)

    def test_listings_follow_their_pages(self):
        # The server answers two keys a page (--list-page 2); a store of
        # more than 1000 objects pages the same way.
        store = "s3://%s/paging" % BUCKET
        d = self.dev("paging", "--backup-to", store, "--backups-kept", "0")
        epochs = self.three_backups(d)
        before = self.s3.stats()
        r = run(self.maroon, "snapshot", "list", "--store", store, env=self.env)
        self.assertEqual(r.returncode, 0, r.stderr)
        for e in epochs:
            self.assertIn("%020d" % e, r.stdout)
        self.assertEqual(self.s3.stats()["list_pages"] - before["list_pages"], 2)

    def test_a_damaged_object_is_refused(self):
        store = os.path.join(self.work, "dir-store")
        d = self.dev("dirstore", "--backup-to", store)
        fill(d.resp_port, 1000, 50)
        r = run(self.maroon, "backup", "--http-port", d.http_port)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        node_dir = os.path.join(store, "node-1")
        (name,) = os.listdir(node_dir)
        path = os.path.join(node_dir, name)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0xFF]))
        r = run(self.maroon, "snapshot", "download", "--store", store, "--to",
                os.path.join(self.work, "damaged.msnap"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is damaged", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.work, "damaged.msnap")))
        r = run(self.maroon, "restore", "--from", store, "--data-dir",
                os.path.join(self.work, "from-damaged"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is damaged", r.stderr)


class ClusterBootstrap(unittest.TestCase):
    """A cluster node whose data directory was lost starts from the newest
    snapshot in the cluster's store (a directory here), not from a peer's."""

    def setUp(self):
        self.maroon = DevTestCase.MAROON
        self.dir = tempfile.mkdtemp(prefix="maroon-objstore-cluster-")
        r = run(self.maroon, "cluster", "up", "--dir", self.dir, "--nodes", "3")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = run(self.maroon, "cluster", "down", "--dir", self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        config = os.path.join(self.dir, "cluster.toml")
        with open(config) as f:
            text = f.read()
        # Peers keep few executed txs, so the restarted node cannot pull them.
        text = re.sub(r"tx_retention_bytes_max = \d+", "tx_retention_bytes_max = 16777216", text)
        text += '\n[backup]\nstore = "backups"\ninterval_s = 3600\n'
        with open(config, "w") as f:
            f.write(text)
        r = run(self.maroon, "cluster", "up", "--dir", self.dir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.ports = {}
        node = None
        for line in text.splitlines():
            line = line.strip()
            if line == "[[nodes]]":
                node = {}
            elif node is not None and "=" in line:
                key, value = (s.strip() for s in line.split("=", 1))
                if key in ("id", "http_port", "resp_port"):
                    node[key] = int(value)
                if len(node) == 3:
                    self.ports[node["id"]] = node
                    node = None

    def tearDown(self):
        run(self.maroon, "cluster", "down", "--dir", self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_a_wiped_node_bootstraps_from_the_store(self):
        fill(self.ports[1]["resp_port"], 20000, 1000)
        r = run(self.maroon, "backup", "--http-port", self.ports[1]["http_port"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        backup_epoch = status(self.ports[1]["http_port"])["backup"]["last_epoch"]
        # A cluster node's snapshot cannot start a single node.
        r = run(self.maroon, "restore", "--from", os.path.join(self.dir, "backups"),
                "--data-dir", os.path.join(self.dir, "as-dev"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("restores only its own", r.stderr)
        r = run(self.maroon, "cluster", "stop", "--dir", self.dir, "--id", "3")
        self.assertEqual(r.returncode, 0, r.stderr)
        shutil.rmtree(os.path.join(self.dir, "node-3"))
        # Beyond the peers' 16 MiB retention: the txs since are gone from them.
        fill(self.ports[1]["resp_port"], 25000, 1000, prefix="more")
        r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", "3",
                "--bootstrap-from", os.path.join(self.dir, "backups"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(self.dir, "node-3.log")) as f:
            log = f.read()
        self.assertIn("bootstrap.msnap was fetched to start from", log)

        def caught_up():
            s1, s3 = status(self.ports[1]["http_port"]), status(self.ports[3]["http_port"])
            return (s3["serving"] and s1["applied_epoch"] == s3["applied_epoch"] and
                    s1["state_hash"] == s3["state_hash"] and s3)
        s3 = wait_for(caught_up, "node 3 to catch up", 90)
        # The stored snapshot was installed: node 1's, or a newer one a peer
        # uploaded meanwhile (each node's first upload goes at once). What
        # came after it and the peers no longer keep as txs came in one more
        # snapshot from a peer (not if the stored one was new enough).
        t = s3["snapshot"]["transfer"]
        self.assertGreaterEqual(t["bootstrap_epoch"], backup_epoch, t)
        self.assertGreaterEqual(t["installed"], 1, t)
        self.assertEqual(t["installed"] >= 2, t["bytes_received"] > 0, t)
        # Deleted once node 3's own snapshot of what it installed is
        # published (written on its snapshot thread, maybe after it caught up).
        bootstrap = os.path.join(self.dir, "node-3", "snapshots", "bootstrap.msnap")
        wait_for(lambda: not os.path.exists(bootstrap), "the bootstrap file to be deleted", 60)


if __name__ == "__main__":
    run_tests()
