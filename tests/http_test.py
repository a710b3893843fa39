#!/usr/bin/env python3
"""The HTTP/JSON API and the maroon CLI against a real maroon dev process."""
import json
import subprocess
import urllib.error
import urllib.request

from maroon_proc import Dev, DevTestCase, run_tests


class HttpTest(DevTestCase):
    WORK_PREFIX = "maroon-http-"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.base = "http://127.0.0.1:%d" % cls.dev.http_port

    def req(self, method, path, body=None, headers=None):
        data = body.encode() if isinstance(body, str) else body
        r = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(r, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def test_put_get_delete(self):
        self.assertEqual(self.req("PUT", "/v1/kv/h1", "hello")[0], 200)
        self.assertEqual(self.req("GET", "/v1/kv/h1"), (200, b"hello"))
        code, body = self.req("DELETE", "/v1/kv/h1")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["deleted"], 1)
        self.assertEqual(self.req("GET", "/v1/kv/h1")[0], 404)

    def test_if_absent_first_writer_wins(self):
        self.assertEqual(self.req("PUT", "/v1/kv/h2?if-absent", "first")[0], 200)
        self.assertEqual(self.req("PUT", "/v1/kv/h2?if-absent", "second")[0], 409)
        self.assertEqual(self.req("GET", "/v1/kv/h2"), (200, b"first"))

    def test_tx_endpoint(self):
        code, body = self.req("POST", "/v1/tx", json.dumps({"op": "incrby", "key": "h3", "delta": 5}),
                              {"Content-Type": "application/json"})
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["int"], 5)
        code, body = self.req("POST", "/v1/tx", "{not json")
        self.assertEqual(code, 400)
        self.assertIn("error", json.loads(body))

    def test_limits(self):
        self.assertEqual(self.req("PUT", "/v1/kv/" + "k" * (16 * 1024 + 1), "v")[0], 413)
        self.assertEqual(self.req("PUT", "/v1/kv/big", "v" * (8 * 1024 * 1024 + 1))[0], 413)
        self.assertEqual(self.req("GET", "/v1/status")[0], 200)

    def test_status_and_metrics(self):
        code, body = self.req("GET", "/v1/status")
        self.assertEqual(code, 200)
        self.assertTrue(json.loads(body)["serving"])
        code, body = self.req("GET", "/metrics")
        self.assertEqual(code, 200)
        text = body.decode()
        for name in ("maroon_txs_submitted_total", "maroon_wal_fsync_seconds_bucket",
                     "maroon_wal_batches_total", "maroon_inflight_txs"):
            self.assertIn(name, text)

    def test_cli(self):
        def cli(*args):
            return subprocess.run([self.MAROON] + list(args) + ["--http-port", str(self.dev.http_port)],
                                  capture_output=True, text=True, timeout=30)
        self.assertEqual(cli("kv", "put", "cli-key", "cli value").returncode, 0)
        r = cli("kv", "get", "cli-key")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "cli value")
        self.assertEqual(cli("kv", "del", "cli-key").returncode, 0)
        self.assertNotEqual(cli("kv", "get", "cli-key").returncode, 0)
        r = cli("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("serving", r.stdout)

    def test_second_process_on_the_same_data_dir_is_refused(self):
        second = Dev(self.MAROON, self.dev.data_dir, self.work + "/second.log")
        with self.assertRaises(RuntimeError):
            second.start(timeout=10)
        with open(self.work + "/second.log") as f:
            self.assertIn("in use by another maroon process", f.read())
        self.assertEqual(self.req("GET", "/v1/status")[0], 200, "the first process keeps serving")

    def test_bench_runs(self):
        r = subprocess.run([self.MAROON, "bench", "--native-port", str(self.dev.native_port), "--seconds", "1",
                            "-c", "4", "-P", "8", "--mix", "set:50,get:40,incr:10"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("throughput:", r.stdout)
        self.assertIn("p99", r.stdout)


if __name__ == "__main__":
    run_tests()
