#!/usr/bin/env python3
"""Credentials on the client ports of a real `maroon dev` (docs/security.md,
"Credentials"): users made with `maroon user add`, then stock clients
(redis-cli, curl, redis-py when installed) and maroon's own CLI log in as a
read-write and a read-only user; nothing runs before a login, and a
non-loopback host without users is refused."""
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from maroon_proc import Dev, Resp, DevTestCase, run_tests, free_port


def run(*args, input=None, env=None, timeout=60):
    return subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=None if input is not None else subprocess.DEVNULL)


def http(port, method, path, body=None, token=None, basic=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if basic:
        import base64
        req.add_header("Authorization", "Basic " + base64.b64encode(basic.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Credentials(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.maroon = DevTestCase.MAROON
        cls.work = tempfile.mkdtemp(prefix="maroon-credentials-")
        cls.users = cls.work + "/users.toml"
        cls.writer = cls.add_user("writer", "read-write")
        cls.reader = cls.add_user("reader", "read-only")
        cls.dev = Dev(cls.maroon, cls.work + "/data", cls.work + "/maroon.log",
                      extra_args=["--users", cls.users], token=cls.reader)
        cls.dev.start()

    @classmethod
    def tearDownClass(cls):
        cls.dev.terminate()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def add_user(cls, name, access):
        r = run(cls.maroon, "user", "add", "--file", cls.users, "--name", name, "--access", access)
        assert r.returncode == 0, r.stderr
        password = r.stdout.strip()
        assert re.fullmatch(r"[A-Za-z0-9_-]{44}", password), r.stdout
        return password

    def redis_cli(self, *args, user=None, password=None):
        cmd = ["redis-cli", "-p", str(self.dev.resp_port), "--no-auth-warning"]
        if user:
            cmd += ["--user", user, "--pass", password]
        r = run(*cmd, *args)
        return (r.stdout + r.stderr).strip()

    def test_users_file_is_private_and_holds_no_password(self):
        mode = stat.S_IMODE(os.stat(self.users).st_mode)
        self.assertEqual(mode, 0o600)
        with open(self.users) as f:
            text = f.read()
        self.assertNotIn(self.writer, text)
        self.assertIn('name = "writer"', text)
        # A user cannot be added twice.
        r = run(self.maroon, "user", "add", "--file", self.users, "--name", "writer")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('user "writer" appears twice', r.stderr)
        # A chosen password that is too short is refused.
        r = run(self.maroon, "user", "add", "--file", self.users, "--name", "short",
                "--password-stdin", input="short\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("a password is 16..1024 bytes", r.stderr)

    def test_redis_cli(self):
        self.assertIn("NOAUTH", self.redis_cli("set", "k", "v"))
        self.assertIn("WRONGPASS", self.redis_cli("get", "k", user="writer", password=self.reader))
        self.assertEqual(self.redis_cli("set", "cli", "v1", user="writer", password=self.writer), "OK")
        self.assertEqual(self.redis_cli("get", "cli", user="reader", password=self.reader), "v1")
        self.assertIn("NOPERM", self.redis_cli("set", "cli", "v2", user="reader", password=self.reader))
        # -a PASSWORD sends AUTH <password>: the password names its user.
        r = run("redis-cli", "-p", str(self.dev.resp_port), "--no-auth-warning", "-a", self.writer,
                "incr", "counter")
        self.assertEqual(r.stdout.strip(), "1")
        self.assertEqual(self.redis_cli("get", "cli", user="writer", password=self.writer), "v1")

    def test_resp_client_list_names_the_user(self):
        c = Resp(self.dev.resp_port)
        self.assertEqual(c.call("AUTH", "reader", self.reader), "OK")
        self.assertIn(" user=reader ", c.call("CLIENT", "INFO"))
        c.close()

    def test_http_bearer_and_basic(self):
        port = self.dev.http_port
        self.assertEqual(http(port, "GET", "/v1/kv/h")[0], 401)
        self.assertEqual(http(port, "GET", "/metrics")[0], 401)
        self.assertEqual(http(port, "GET", "/v1/status", token="wrong")[0], 401)
        self.assertEqual(http(port, "PUT", "/v1/kv/h", b"hv", token=self.writer)[0], 200)
        self.assertEqual(http(port, "GET", "/v1/kv/h", token=self.reader), (200, b"hv"))
        self.assertEqual(http(port, "GET", "/v1/kv/h", basic="reader:" + self.reader), (200, b"hv"))
        self.assertEqual(http(port, "PUT", "/v1/kv/h", b"x", token=self.reader)[0], 403)
        self.assertEqual(http(port, "DELETE", "/v1/kv/h", basic="reader:" + self.reader)[0], 403)
        self.assertEqual(http(port, "GET", "/v1/kv/h", token=self.reader), (200, b"hv"))
        # curl, as a user would call it.
        if shutil.which("curl"):
            r = run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                    "http://127.0.0.1:%d/v1/kv/h" % port)
            self.assertEqual(r.stdout, "401")
            r = run("curl", "-s", "-H", "Authorization: Bearer " + self.reader,
                    "http://127.0.0.1:%d/v1/kv/h" % port)
            self.assertEqual(r.stdout, "hv")
        status, body = http(port, "GET", "/metrics", token=self.reader)
        self.assertEqual(status, 200)
        m = re.search(rb"^maroon_client_auth_failures_total (\d+)$", body, re.M)
        self.assertIsNotNone(m)
        self.assertGreaterEqual(int(m.group(1)), 1)

    def test_maroon_cli_with_token_and_password(self):
        port = str(self.dev.http_port)
        r = run(self.maroon, "kv", "put", "mk", "mv", "--http-port", port, "--token", self.writer)
        self.assertEqual(r.returncode, 0, r.stderr)
        env = dict(os.environ, MAROON_TOKEN=self.reader)
        r = run(self.maroon, "kv", "get", "mk", "--http-port", port, env=env)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "mv"))
        r = run(self.maroon, "kv", "get", "mk", "--http-port", port)
        self.assertNotEqual(r.returncode, 0)
        r = run(self.maroon, "status", "--http-port", port, "--token", self.reader)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        native = str(self.dev.native_port)
        r = run(self.maroon, "bench", "--native-port", native, "--seconds", "0.5", "-c", "2",
                "--mix", "get", "--user", "reader", "--password", self.reader)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = run(self.maroon, "bench", "--native-port", native, "--seconds", "0.5", "-c", "2",
                "--mix", "set", "--password", self.reader)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("read-only", r.stdout + r.stderr)
        r = run(self.maroon, "bench", "--native-port", native, "--seconds", "0.5", "-c", "1",
                "--user", "reader", "--password", "wrong")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("refused the credentials", r.stdout + r.stderr)

    def test_redis_py(self):
        try:
            import redis
        except ImportError:
            self.fail("redis-py is missing: run scripts/install-deps.sh (python3-redis)")
        r = redis.Redis(port=self.dev.resp_port, username="writer", password=self.writer)
        self.assertTrue(r.set("py", "1"))
        ro = redis.Redis(port=self.dev.resp_port, username="reader", password=self.reader)
        self.assertEqual(ro.get("py"), b"1")
        with self.assertRaises(redis.exceptions.NoPermissionError):
            ro.set("py", "2")
        with self.assertRaises(redis.exceptions.RedisError) as refused:
            redis.Redis(port=self.dev.resp_port, username="reader", password="nope").ping()
        self.assertIn("WRONGPASS", str(refused.exception))  # as Redis 7 answers
        p = r.pipeline()  # MULTI/EXEC as the writer
        p.incr("py")
        p.incr("py")
        self.assertEqual(p.execute(), [2, 3])


class ClusterCredentials(unittest.TestCase):
    """[client_auth] users in cluster.toml: every node asks for a login,
    `cluster up` watches it come up with MAROON_TOKEN, `status --config`
    sends --token."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="maroon-cluster-auth-")
        self.maroon = DevTestCase.MAROON

    def tearDown(self):
        run(self.maroon, "cluster", "down", "--dir", self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_cluster_with_users(self):
        r = run(self.maroon, "cluster", "up", "--dir", self.dir, "--nodes", "1", "--no-peer-tls")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = run(self.maroon, "cluster", "down", "--dir", self.dir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = run(self.maroon, "user", "add", "--file", self.dir + "/users.toml", "--name", "ops")
        self.assertEqual(r.returncode, 0, r.stderr)
        password = r.stdout.strip()
        with open(self.dir + "/cluster.toml", "a") as f:
            f.write('\n[client_auth]\nusers = "users.toml"\n')
        with open(self.dir + "/cluster.toml") as f:
            config = f.read()
        resp_port = config.split("resp_port = ")[1].split()[0]

        # Without a token, cluster up sees the node ask for credentials.
        r = run(self.maroon, "cluster", "up", "--dir", self.dir, "--timeout", "5")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("MAROON_TOKEN", r.stdout + r.stderr)
        env = dict(os.environ, MAROON_TOKEN=password)
        r = run(self.maroon, "cluster", "up", "--dir", self.dir, "--timeout", "60", env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = run(self.maroon, "status", "--config", self.dir + "/cluster.toml", "--token", password)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("1 serving", r.stdout)
        r = run("redis-cli", "-p", resp_port, "SET", "c:a", "1")
        self.assertIn("NOAUTH", r.stdout + r.stderr)
        r = run("redis-cli", "-p", resp_port, "--no-auth-warning", "--user", "ops", "--pass",
                password, "SET", "c:a", "1")
        self.assertEqual(r.stdout.strip(), "OK", r.stderr)


class NonLoopbackHost(unittest.TestCase):
    """Off loopback, credentials are required unless explicitly waived. No
    listener is ever opened here: the refusal comes before binding, and the
    waived case names an address this machine does not have."""

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="maroon-credentials-")

    def tearDown(self):
        shutil.rmtree(self.work, ignore_errors=True)

    def dev(self, *extra):
        return run(DevTestCase.MAROON, "dev", "--data-dir", self.work + "/data",
                   "--http-port", str(free_port()), "--resp-port", str(free_port()),
                   "--native-port", str(free_port()), *extra, timeout=60)

    def test_refused_without_users(self):
        r = self.dev("--host", "0.0.0.0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("refusing to serve clients on 0.0.0.0 without credentials", r.stderr)
        self.assertFalse(os.path.exists(self.work + "/data"))

    def test_allow_anonymous_warns(self):
        r = self.dev("--host", "198.18.0.254", "--allow-anonymous")
        out = r.stdout + r.stderr
        self.assertIn("ask for NO credentials", out)
        self.assertNotEqual(r.returncode, 0)  # the address is not this machine's
        self.assertIn("cannot bind", out)

    def test_client_certificates_count_as_credentials(self):
        ca = self.work + "/clients-ca"
        r = run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", ca + ".key", "-out", ca + ".crt", "-days", "1",
                "-subj", "/CN=clients")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.dev("--host", "198.18.0.254", "--tls", "--tls-client-ca", ca + ".crt")
        out = r.stdout + r.stderr
        self.assertNotIn("refusing to serve", out)
        self.assertIn("admit only clients with a certificate from the client CA", out)
        self.assertIn("cannot bind", out)  # the address is not this machine's

    def test_a_readable_users_file_is_refused(self):
        users = self.work + "/users.toml"
        r = run(DevTestCase.MAROON, "user", "add", "--file", users, "--name", "u")
        self.assertEqual(r.returncode, 0, r.stderr)
        os.chmod(users, 0o644)
        r = self.dev("--users", users)
        self.assertEqual(r.returncode, 1)
        self.assertIn("chmod 600", r.stderr)


if __name__ == "__main__":
    run_tests()
