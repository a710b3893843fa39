#!/usr/bin/env python3
"""`maroon dev --tls` with stock clients: redis-cli --tls and curl https://
verify it with the CA it made; without the CA, or in plaintext, they fail.
Then mutual TLS (--tls-client-ca) with a client CA made by the openssl tool,
and [client_tls] in a cluster config under `maroon cluster up`."""
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

from maroon_proc import Dev, DevTestCase, run_tests


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class ClientTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="maroon-client-tls-")
        data = cls.work + "/data"
        cls.tls_dir = data + "/client-tls"
        cls.ca = cls.tls_dir + "/ca.crt"
        cls.dev = Dev(DevTestCase.MAROON, data, cls.work + "/maroon.log", ["--tls"], tls_ca=cls.ca)
        cls.dev.start()

    @classmethod
    def tearDownClass(cls):
        cls.dev.terminate()
        shutil.rmtree(cls.work, ignore_errors=True)

    def url(self, path, host="localhost"):
        return "https://%s:%d%s" % (host, self.dev.http_port, path)

    def curl(self, *args):
        return run(["curl", "-sS", "--max-time", "20"] + list(args))

    def redis_cli(self, *args, tls=True):
        base = ["redis-cli", "-p", str(self.dev.resp_port)]
        if tls:
            base += ["--tls", "--cacert", self.ca]
        return run(base + list(args))

    def test_certificate_files_are_private(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.tls_dir).st_mode), 0o700)
        for name in ("ca.key", "server.key", "ca.crt", "server.crt"):
            mode = stat.S_IMODE(os.stat(os.path.join(self.tls_dir, name)).st_mode)
            self.assertEqual(mode, 0o600, name)

    def test_the_banner_shows_how_to_connect(self):
        with open(self.dev.log_path) as f:
            log = f.read()
        self.assertIn("redis-cli -p %d --tls --cacert %s" % (self.dev.resp_port, self.ca), log)
        self.assertIn("curl -s --cacert %s https://localhost:%d/" % (self.ca, self.dev.http_port), log)

    def test_redis_cli_over_tls(self):
        r = self.redis_cli("SET", "tls:a", "hello")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "OK"), r.stderr)
        r = self.redis_cli("GET", "tls:a")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "hello"), r.stderr)
        # Pipelined, as redis-benchmark -P does.
        cmds = "".join("SET tls:p%d %d\n" % (i, i) for i in range(200))
        r = run(["redis-cli", "-p", str(self.dev.resp_port), "--tls", "--cacert", self.ca, "--pipe"],
                input=cmds)
        self.assertIn("errors: 0, replies: 200", r.stdout, r.stderr)

    def test_plaintext_redis_cli_is_refused_and_counted(self):
        r = self.redis_cli("PING", tls=False)
        self.assertNotIn("PONG", r.stdout)
        r = self.curl("--cacert", self.ca, self.url("/metrics"))
        self.assertEqual(r.returncode, 0, r.stderr)
        line = [l for l in r.stdout.splitlines()
                if l.startswith('maroon_client_tls_handshake_failures_total{port="resp"}')]
        self.assertEqual(len(line), 1, r.stdout)
        self.assertGreaterEqual(int(line[0].split()[1]), 1)

    def test_curl_put_and_get_over_https(self):
        r = self.curl("--fail", "--cacert", self.ca, "-X", "PUT", "--data-binary", "world",
                      self.url("/v1/kv/tls-greeting"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.curl("--fail", "--cacert", self.ca, self.url("/v1/kv/tls-greeting"))
        self.assertEqual((r.returncode, r.stdout), (0, "world"), r.stderr)
        # The certificate names 127.0.0.1 too.
        r = self.curl("--fail", "--cacert", self.ca, self.url("/v1/kv/tls-greeting", "127.0.0.1"))
        self.assertEqual((r.returncode, r.stdout), (0, "world"), r.stderr)

    def test_curl_without_the_ca_fails_verification(self):
        r = self.curl(self.url("/v1/status"))
        self.assertEqual(r.returncode, 60, r.stderr)  # CURLE_PEER_FAILED_VERIFICATION
        self.assertIn("certificate", r.stderr)

    def test_curl_checks_the_host_name(self):
        r = self.curl("--cacert", self.ca, "--resolve",
                      "not-this-host.example:%d:127.0.0.1" % self.dev.http_port,
                      self.url("/v1/status", "not-this-host.example"))
        self.assertEqual(r.returncode, 60, r.stderr)

    def test_plaintext_http_gets_no_answer(self):
        r = self.curl("http://127.0.0.1:%d/v1/status" % self.dev.http_port)
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("serving", r.stdout)

    def test_a_restart_reuses_the_certificates(self):
        before = sha256(self.ca), sha256(self.tls_dir + "/server.crt")
        self.dev.terminate()
        self.dev.start()
        self.assertEqual((sha256(self.ca), sha256(self.tls_dir + "/server.crt")), before)
        r = self.curl("--fail", "--cacert", self.ca, self.url("/v1/status"))
        self.assertEqual(r.returncode, 0, r.stderr)


class MutualTlsTest(unittest.TestCase):
    """--tls-client-ca: only clients with a certificate that CA signed get in."""

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="maroon-mtls-")
        w = cls.work
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        steps = [
            ["openssl", "req", "-x509"] + ec + ["-keyout", w + "/clients-ca.key", "-out",
                                                w + "/clients-ca.crt", "-subj", "/CN=test clients CA",
                                                "-days", "2"],
            ["openssl", "req", "-new"] + ec + ["-keyout", w + "/alice.key", "-out", w + "/alice.csr",
                                               "-subj", "/CN=alice"],
        ]
        with open(w + "/client.ext", "w") as f:
            f.write("extendedKeyUsage=clientAuth\n")
        steps.append(["openssl", "x509", "-req", "-in", w + "/alice.csr", "-CA", w + "/clients-ca.crt",
                      "-CAkey", w + "/clients-ca.key", "-CAcreateserial", "-out", w + "/alice.crt",
                      "-days", "1", "-extfile", w + "/client.ext"])
        for step in steps:
            r = run(step)
            if r.returncode != 0:
                raise RuntimeError("%s: %s" % (" ".join(step), r.stderr))
        data = w + "/data"
        cls.ca = data + "/client-tls/ca.crt"
        cls.dev = Dev(DevTestCase.MAROON, data, w + "/maroon.log",
                      ["--tls", "--tls-client-ca", w + "/clients-ca.crt"], tls_ca=cls.ca)
        # The readiness probe has no client certificate: wait on the log instead.
        cls.dev.wait_serving = lambda timeout=30.0: cls.wait_banner(timeout)
        cls.dev.start()

    @classmethod
    def wait_banner(cls, timeout):
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cls.dev.proc.poll() is not None:
                raise RuntimeError("maroon dev exited; see " + cls.dev.log_path)
            with open(cls.dev.log_path) as f:
                if "maroon dev is serving over TLS" in f.read():
                    return
            time.sleep(0.02)
        raise RuntimeError("maroon dev did not serve; see " + cls.dev.log_path)

    @classmethod
    def tearDownClass(cls):
        cls.dev.terminate()
        shutil.rmtree(cls.work, ignore_errors=True)

    def curl(self, *args):
        return run(["curl", "-sS", "--max-time", "20", "--cacert", self.ca] + list(args) +
                   ["https://localhost:%d/v1/status" % self.dev.http_port])

    def test_a_client_certificate_is_required(self):
        r = self.curl()
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("serving", r.stdout)
        r = self.curl("--cert", self.work + "/alice.crt", "--key", self.work + "/alice.key")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("serving", r.stdout)

    def test_redis_cli_with_a_client_certificate(self):
        base = ["redis-cli", "-p", str(self.dev.resp_port), "--tls", "--cacert", self.ca]
        r = run(base + ["--cert", self.work + "/alice.crt", "--key", self.work + "/alice.key",
                        "SET", "m:a", "1"])
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "OK"), r.stderr)
        r = run(base + ["PING"])
        self.assertNotIn("PONG", r.stdout)


def make_ca_and_server_cert(out):
    """A CA and a server certificate for localhost and 127.0.0.1, with the
    openssl tool (as an operator would make them): out/ca.crt, out/server.*"""
    os.makedirs(out, mode=0o700, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    with open(out + "/server.ext", "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    for step in (
            ["openssl", "req", "-x509"] + ec + ["-keyout", out + "/ca.key", "-out", out + "/ca.crt",
                                                "-subj", "/CN=test CA", "-days", "2"],
            ["openssl", "req", "-new"] + ec + ["-keyout", out + "/server.key", "-out",
                                               out + "/server.csr", "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", out + "/server.csr", "-CA", out + "/ca.crt", "-CAkey",
             out + "/ca.key", "-CAcreateserial", "-out", out + "/server.crt", "-days", "1",
             "-extfile", out + "/server.ext"]):
        r = run(step)
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (" ".join(step), r.stderr))
    os.chmod(out + "/server.key", 0o600)


class ClusterClientTlsTest(unittest.TestCase):
    """[client_tls] in cluster.toml: `cluster up` reaches the node over HTTPS,
    `status --config` too, and redis-cli --tls gets in."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="maroon-cluster-tls-")
        self.maroon = DevTestCase.MAROON

    def tearDown(self):
        run([self.maroon, "cluster", "down", "--dir", self.dir])
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_cluster_up_with_client_tls(self):
        r = run([self.maroon, "cluster", "up", "--dir", self.dir, "--nodes", "1", "--no-peer-tls"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = run([self.maroon, "cluster", "down", "--dir", self.dir])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        make_ca_and_server_cert(self.dir + "/client-tls")
        with open(self.dir + "/cluster.toml", "a") as f:
            f.write('\n[client_tls]\ncert = "client-tls/server.crt"\nkey = "client-tls/server.key"\n')
        with open(self.dir + "/cluster.toml") as f:
            config = f.read()
        resp_port = int(config.split("resp_port = ")[1].split()[0])

        # A key others may read stops the node, naming the file.
        os.chmod(self.dir + "/client-tls/server.key", 0o644)
        r = run([self.maroon, "cluster", "up", "--dir", self.dir, "--timeout", "20"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("server.key", r.stderr)
        self.assertIn("chmod 600", r.stderr)
        os.chmod(self.dir + "/client-tls/server.key", 0o600)

        r = run([self.maroon, "cluster", "up", "--dir", self.dir, "--timeout", "60"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("client ports speak TLS", r.stdout)
        r = run([self.maroon, "status", "--config", self.dir + "/cluster.toml"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("1 serving", r.stdout)
        base = ["redis-cli", "-p", str(resp_port), "--tls", "--cacert", self.dir + "/client-tls/ca.crt"]
        r = run(base + ["SET", "c:a", "1"])
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "OK"), r.stderr)
        r = run(["redis-cli", "-p", str(resp_port), "PING"])
        self.assertNotIn("PONG", r.stdout)


if __name__ == "__main__":
    run_tests()
