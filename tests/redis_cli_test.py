#!/usr/bin/env python3
"""Stock redis-cli and redis-benchmark (Debian's redis-tools) against maroon dev."""
import subprocess

from maroon_proc import DevTestCase, run_tests


class RedisCliTest(DevTestCase):
    WORK_PREFIX = "maroon-redis-cli-"

    def cli(self, *args, stdin=None):
        r = subprocess.run(["redis-cli", "-p", str(self.dev.resp_port)] + list(args),
                           input=stdin, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_basic_commands(self):
        self.assertEqual(self.cli("PING"), "PONG")
        self.assertEqual(self.cli("ECHO", "hi there"), "hi there")
        self.assertEqual(self.cli("SET", "cli:a", "1"), "OK")
        self.assertEqual(self.cli("GET", "cli:a"), "1")
        self.assertEqual(self.cli("INCR", "cli:a"), "2")
        self.assertEqual(self.cli("INCRBY", "cli:a", "10"), "12")
        self.assertEqual(self.cli("DECR", "cli:a"), "11")
        self.assertEqual(self.cli("SETNX", "cli:a", "x"), "0")
        self.assertEqual(self.cli("SET", "cli:b", "x", "NX"), "OK")
        self.assertEqual(self.cli("SET", "cli:b", "y", "NX"), "")
        self.assertEqual(self.cli("SET", "cli:c", "y", "XX"), "")
        self.assertEqual(self.cli("MSET", "cli:m1", "v1", "cli:m2", "v2"), "OK")
        self.assertEqual(self.cli("MGET", "cli:m1", "cli:nope", "cli:m2").splitlines(), ["v1", "", "v2"])
        self.assertEqual(self.cli("EXISTS", "cli:m1", "cli:nope", "cli:m2"), "2")
        self.assertEqual(self.cli("DEL", "cli:m1", "cli:nope"), "1")
        self.assertEqual(self.cli("GET", "cli:m1"), "")
        self.assertGreaterEqual(int(self.cli("DBSIZE")), 3)
        self.assertIn("redis_version", self.cli("INFO"))

    def test_errors_are_replies_not_crashes(self):
        out = self.cli("NOSUCHCOMMAND", "x")
        self.assertIn("unknown command", out)
        out = self.cli("GET")
        self.assertIn("wrong number of arguments", out)
        self.cli("SET", "cli:str", "abc")
        self.assertIn("not an integer", self.cli("INCR", "cli:str"))
        big_key = "k" * (16 * 1024 + 1)
        self.assertIn("ERR", self.cli("SET", big_key, "v"))
        self.assertEqual(self.cli("PING"), "PONG")

    def test_oversize_value_is_refused(self):
        value = "v" * (8 * 1024 * 1024 + 1)
        out = self.cli("-x", "SET", "cli:big", stdin=value)
        self.assertIn("ERR", out)
        self.assertEqual(self.cli("PING"), "PONG")

    def test_five_mib_value_round_trips(self):
        value = "f" * (5 * 1024 * 1024)
        self.assertEqual(self.cli("-x", "SET", "cli:five", stdin=value), "OK")
        self.assertEqual(self.cli("GET", "cli:five"), value)

    def test_multi_exec_is_one_tx(self):
        out = self.cli(stdin="MULTI\nINCR cli:tx\nINCR cli:tx\nGET cli:tx\nEXEC\n")
        self.assertEqual(out.splitlines(), ["OK", "QUEUED", "QUEUED", "QUEUED", "1", "2", "2"])
        out = self.cli(stdin="MULTI\nINCR cli:tx2\nNOSUCH\nEXEC\n")
        self.assertIn("EXECABORT", out)
        self.assertEqual(self.cli("GET", "cli:tx2"), "")

    def test_resp3(self):
        r = subprocess.run(["redis-cli", "-3", "-p", str(self.dev.resp_port), "HELLO", "3"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("proto", r.stdout)
        out = self.cli(stdin="HELLO 3\nSET cli:r3 v\nGET cli:r3\nCLIENT SETNAME r3\nCLIENT GETNAME\n")
        self.assertIn("v", out.splitlines())
        self.assertEqual(out.splitlines()[-1], "r3")

    def test_pipe_mode(self):
        cmds = "".join("SET pipe:%d %d\n" % (i, i) for i in range(500))
        r = subprocess.run(["redis-cli", "-p", str(self.dev.resp_port), "--pipe"],
                           input=cmds, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("errors: 0, replies: 500", r.stdout)
        self.assertEqual(self.cli("GET", "pipe:499"), "499")

    def test_redis_benchmark_runs_clean(self):
        for pipeline in ("1", "16"):
            r = subprocess.run(["redis-benchmark", "-p", str(self.dev.resp_port), "-t", "set,get,incr,mset",
                                "-n", "3000", "-c", "20", "-P", pipeline, "-q"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertNotIn("ERR", r.stdout + r.stderr)
            for t in ("SET", "GET", "INCR", "MSET"):
                self.assertIn(t, r.stdout)


if __name__ == "__main__":
    run_tests()
