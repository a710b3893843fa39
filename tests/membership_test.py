#!/usr/bin/env python3
"""Membership changes of a real local cluster while it serves
(docs/membership.md): `maroon cluster add-node`, `replace-node` (of a running
node and of a killed one) and `remove-node`, with writes going on through a
standalone gateway the whole time. Afterwards every acknowledged write is
read back from every node of the final group, their state hashes agree,
cluster.toml lists the final group with its membership config and the
removed ids, removed nodes retired (exit, REMOVED marker, and a restart of
one is refused), and the admin endpoint refuses bad requests clearly."""
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tomllib
import unittest
import urllib.error
import urllib.request

from maroon_proc import DevTestCase, Resp, run_tests


def run(*args, timeout=180):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def status(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/v1/status" % port, timeout=5) as r:
        return json.load(r)


def post(port, body):
    """(HTTP status, parsed JSON body) of POST /v1/admin/members."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:%d/v1/admin/members" % port, data=data,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Writer(threading.Thread):
    """SETs k<i> = v<i> through one RESP port until stopped; remembers
    which were acknowledged (OK) and counts the refusals."""

    def __init__(self, port, prefix):
        super().__init__(daemon=True)
        self.port = port
        self.prefix = prefix
        self.stop = threading.Event()
        self.acked = {}
        self.errors = []
        self.i = 0

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = Resp(self.port, timeout=10)
                self.i += 1
                key, value = "%s%d" % (self.prefix, self.i), "v%d" % self.i
                if conn.call("SET", key, value) == "OK":
                    self.acked[key] = value
            except Resp.Error as e:
                self.errors.append(str(e))
                time.sleep(0.02)
            except (OSError, ConnectionError) as e:
                self.errors.append(repr(e))
                conn = None
                time.sleep(0.05)


class Counter(threading.Thread):
    """INCRs one key through one RESP port until stopped: `acked` INCRs were
    answered, `sent` were sent (answered or not)."""

    def __init__(self, port, key):
        super().__init__(daemon=True)
        self.port, self.key = port, key
        self.stop = threading.Event()
        self.acked = self.sent = 0
        self.last = 0

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = Resp(self.port, timeout=10)
                self.sent += 1
                value = conn.call("INCR", self.key)
                self.acked += 1
                if value <= self.last:
                    raise AssertionError("INCR went back from %d to %d" % (self.last, value))
                self.last = value
            except Resp.Error:
                time.sleep(0.02)
            except (OSError, ConnectionError):
                conn = None
                time.sleep(0.05)


class MembershipChanges(unittest.TestCase):
    def setUp(self):
        self.maroon = DevTestCase.MAROON
        self.dir = tempfile.mkdtemp(prefix="maroon-membership-")
        self.config = os.path.join(self.dir, "cluster.toml")
        r = run(self.maroon, "cluster", "up", "--dir", self.dir, "--nodes", "3", "--gateways", "1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def tearDown(self):
        run(self.maroon, "cluster", "down", "--dir", self.dir)
        if hasattr(self, "_outcome") and any(e for _, e in getattr(self._outcome, "errors", [])):
            return  # keep the logs of a failure
        shutil.rmtree(self.dir, ignore_errors=True)

    def cfg(self):
        with open(self.config, "rb") as f:
            return tomllib.load(f)

    def nodes(self):
        return {n["id"]: n for n in self.cfg()["nodes"]}

    def pid(self, node):
        with open(os.path.join(self.dir, "node-%d.pid" % node)) as f:
            return int(f.read())

    def change(self, *args):
        r = run(self.maroon, "cluster", *args, "--dir", self.dir, "--timeout", "60")
        self.assertEqual(r.returncode, 0, "%s:\n%s%s" % (args, r.stdout, r.stderr))
        return r.stdout

    def primary_and_backup(self):
        ports = {i: n["http_port"] for i, n in self.nodes().items()}
        primary = backup = None
        for i, port in ports.items():
            role = status(port)["role"]
            if role == "primary":
                primary = port
            elif role == "backup":
                backup = port
        return primary, backup

    def test_add_replace_and_remove_nodes_under_load(self):
        gateway = self.cfg()["gateways"][0]["resp_port"]
        writer = Writer(gateway, "g")
        # Another through node 1, which the second change replaces: what it
        # acknowledged before it retired must survive too.
        writer1 = Writer(self.nodes()[1]["resp_port"], "n")
        writer.start()
        writer1.start()
        try:
            time.sleep(0.5)
            out = self.change("add-node")
            self.assertIn("committed: membership config 1, members 1 2 3 4", out)
            self.assertIn("node 4 serves", out)
            out = self.change("replace-node", "--id", "1")
            self.assertIn("committed: membership config 2, members 2 3 4 5", out)
            self.assertIn("node 1 handed over and retired", out)
            # A node lost for good (killed) is replaced by a new one.
            os.kill(self.pid(2), signal.SIGKILL)
            out = self.change("replace-node", "--id", "2")
            self.assertIn("committed: membership config 3, members 3 4 5 6", out)
            self.assertIn("node 2 was not running", out)
            out = self.change("remove-node", "--id", "3")
            self.assertIn("committed: membership config 4, members 4 5 6", out)
            self.assertIn("node 3 handed over and retired", out)
            time.sleep(0.5)
        finally:
            for w in (writer, writer1):
                w.stop.set()
                w.join(30)
        self.assertGreater(len(writer.acked), 50, writer.errors[-5:])
        self.assertGreater(len(writer1.acked), 10, writer1.errors[-5:])
        acked = dict(writer.acked)
        acked.update(writer1.acked)

        cfg = self.cfg()
        self.assertEqual(sorted(n["id"] for n in cfg["nodes"]), [4, 5, 6])
        self.assertEqual(cfg["membership"]["epoch"], 4)
        self.assertEqual(sorted(cfg["membership"]["removed"]), [1, 2, 3])
        self.assertFalse(any(f.startswith("cluster.toml.join") for f in os.listdir(self.dir)))

        # Every acknowledged write, on every node of the final group.
        nodes = self.nodes()
        for i, n in nodes.items():
            conn = Resp(n["resp_port"], timeout=30)
            keys = sorted(acked)
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                got = conn.call("MGET", *chunk)
                for key, value in zip(chunk, got):
                    self.assertEqual(value, acked[key], "node %d lost %s" % (i, key))
            conn.close()
        deadline = time.time() + 20
        while True:
            hashes = {status(n["http_port"])["state_hash"] for n in nodes.values()}
            applied = {status(n["http_port"])["applied_epoch"] for n in nodes.values()}
            if len(hashes) == 1 and len(applied) == 1:
                break
            self.assertLess(time.time(), deadline, "state hashes differ: %s" % hashes)
            time.sleep(0.2)
        for n in nodes.values():
            m = status(n["http_port"])["membership"]
            self.assertEqual((m["epoch"], m["members"]), (4, [4, 5, 6]))

        # The retired nodes marked their directories, and one is refused a restart.
        for i in (1, 3):
            with open(os.path.join(self.dir, "node-%d" % i, "REMOVED")) as f:
                self.assertIn("was removed from cluster", f.read())
        old_config = os.path.join(self.dir, "old.toml")
        with open(self.config) as f:
            text = f.read()
        # A config that still lists node 1 (as before its removal).
        node1 = ('\n[[nodes]]\nid = 1\nhost = "127.0.0.1"\npeer_port = 1\nhttp_port = 2\n'
                 'resp_port = 3\nnative_port = 4\ndata_dir = "%s"\n'
                 % os.path.join(self.dir, "node-1"))
        text = text.replace("removed = [1, 2, 3]", "removed = [2, 3]") + node1
        with open(old_config, "w") as f:
            f.write(text)
        r = run(self.maroon, "node", "--config", old_config, "--id", "1", timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("is not used again", r.stdout + r.stderr)

        # A node of the changed group whose directory is lost must be replaced.
        self.assertEqual(run(self.maroon, "cluster", "stop", "--dir", self.dir, "--id", "6").returncode, 0)
        moved = os.path.join(self.dir, "node-6.moved")
        os.rename(os.path.join(self.dir, "node-6"), moved)
        r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", "6", "--timeout", "20")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("replace-node --id 6", r.stdout + r.stderr)
        shutil.rmtree(os.path.join(self.dir, "node-6"), ignore_errors=True)
        os.rename(moved, os.path.join(self.dir, "node-6"))
        r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", "6")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_random_changes_while_nodes_crash(self):
        """Real-process chaos: a seeded run of membership changes (add,
        remove, replace) with a member SIGKILLed while each change is in
        flight and restarted after it, under load. MAROON_MEMBERSHIP_SEED
        replays a run; MAROON_MEMBERSHIP_ROUNDS sets its length."""
        seed = int(os.environ.get("MAROON_MEMBERSHIP_SEED", random.randrange(1, 1 << 30)))
        rounds = int(os.environ.get("MAROON_MEMBERSHIP_ROUNDS", "6"))
        print("\nmembership chaos: seed %d, %d rounds" % (seed, rounds), flush=True)
        rng = random.Random(seed)
        gateway = self.cfg()["gateways"][0]["resp_port"]
        writer = Writer(gateway, "g")
        counter = Counter(gateway, "counter")
        writer.start()
        counter.start()
        epoch = 0
        try:
            for round_ in range(rounds):
                ids = sorted(self.nodes())
                ops = ["replace"] + (["add"] if len(ids) < 5 else []) + (
                    ["remove"] if len(ids) > 3 else [])
                op = rng.choice(ops)
                goes = rng.choice(ids) if op != "add" else None
                args = {"add": ["add-node"], "remove": ["remove-node", "--id", str(goes)],
                        "replace": ["replace-node", "--id", str(goes)]}[op]
                victim = rng.choice([i for i in ids if i != goes])
                delay = rng.uniform(0, 0.4)
                print("round %d: %s, node %d killed after %.2f s" % (round_, " ".join(args),
                                                                     victim, delay), flush=True)
                proc = subprocess.Popen([self.maroon, "cluster", *args, "--dir", self.dir,
                                         "--timeout", "60"], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        stdin=subprocess.DEVNULL)
                time.sleep(delay)
                os.kill(self.pid(victim), signal.SIGKILL)
                # Back after a while, the change still in flight or done (a
                # change waits for a quorum of current members to answer).
                time.sleep(rng.uniform(0.2, 1.5))
                r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", str(victim))
                self.assertEqual(r.returncode, 0, "seed %d: restart of node %d: %s%s"
                                 % (seed, victim, r.stdout, r.stderr))
                out, _ = proc.communicate(timeout=240)
                self.assertEqual(proc.returncode, 0, "seed %d round %d: %s" % (seed, round_, out))
                epoch += 1
                self.assertIn("committed: membership config %d" % epoch, out)
        finally:
            for w in (writer, counter):
                w.stop.set()
                w.join(30)
        self.assertGreater(len(writer.acked), 50, writer.errors[-5:])
        self.assertGreater(counter.acked, 10)
        nodes = self.nodes()
        self.assertEqual(self.cfg()["membership"]["epoch"], epoch)
        deadline = time.time() + 30
        while True:
            statuses = [status(n["http_port"]) for n in nodes.values()]
            if len({(s["state_hash"], s["applied_epoch"]) for s in statuses}) == 1:
                break
            self.assertLess(time.time(), deadline, "seed %d: states differ: %s" % (
                seed, [(s["node_id"], s["applied_epoch"], s["state_hash"]) for s in statuses]))
            time.sleep(0.2)
        for i, n in nodes.items():
            conn = Resp(n["resp_port"], timeout=30)
            keys = sorted(writer.acked)
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                for key, value in zip(chunk, conn.call("MGET", *chunk)):
                    self.assertEqual(value, writer.acked[key], "seed %d: node %d lost %s"
                                     % (seed, i, key))
            total = int(conn.call("GET", "counter"))
            # Every acknowledged INCR counted once; unanswered ones at most once.
            self.assertGreaterEqual(total, counter.acked, "seed %d: node %d" % (seed, i))
            self.assertLessEqual(total, counter.sent, "seed %d: node %d" % (seed, i))
            conn.close()

    def test_a_removed_node_that_died_before_it_retired_is_restarted_to_hand_over(self):
        # Paused, node 3 cannot hand over: the change commits without it.
        pid = self.pid(3)
        os.kill(pid, signal.SIGSTOP)
        try:
            r = run(self.maroon, "cluster", "remove-node", "--dir", self.dir, "--id", "3",
                    "--timeout", "3")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("committed: membership config 1, members 1 2", r.stdout)
            self.assertIn("node 3 (pid %d) has not retired" % pid, r.stdout)
        finally:
            os.kill(pid, signal.SIGKILL)
        self.assertNotIn(3, self.nodes())
        self.assertTrue(os.path.exists(os.path.join(self.dir, "cluster.toml.leaving-3")))
        # Started again from the config it had, it learns of its removal,
        # hands over and exits; then it is gone for good.
        r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", "3")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("node 3 handed over and retired", r.stdout)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "node-3", "REMOVED")))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "cluster.toml.leaving-3")))
        r = run(self.maroon, "cluster", "start", "--dir", self.dir, "--id", "3")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("has no node 3", r.stdout + r.stderr)
        # The group of two goes on.
        conn = Resp(self.nodes()[1]["resp_port"])
        self.assertEqual(conn.call("SET", "after", "yes"), "OK")
        conn.close()

    def test_the_admin_endpoint_refuses_bad_requests(self):
        primary, backup = self.primary_and_backup()
        self.assertIsNotNone(primary)
        self.assertIsNotNone(backup)
        nodes = self.nodes()

        def member(i):
            n = nodes[i]
            return {k: n[k] for k in ("id", "host", "peer_port", "http_port", "resp_port",
                                      "native_port")}

        good = {"expect_epoch": 0, "members": [member(1), member(2)]}
        code, body = post(backup, good)
        self.assertEqual(code, 503, body)
        self.assertIn("is not the primary", body["error"])
        for bad, why in [
            (b"{not json", "bad JSON"),
            ({"expect_epoch": 0}, "the body must be"),
            ({"expect_epoch": 0, "members": [member(1), member(2)], "x": 1}, "unknown field"),
            ({"expect_epoch": -1, "members": [member(1), member(2)]}, "expect_epoch"),
            ({"expect_epoch": 0, "members": [member(1), member(1)]}, "listed twice"),
            ({"expect_epoch": 0, "members": [dict(member(1), id=64), member(2)]}, "out of range"),
            ({"expect_epoch": 0, "members": [dict(member(1), host=""), member(2)]}, "host"),
            ({"expect_epoch": 0, "members": [dict(member(1), peer_port=1), member(2)]},
             "keeps the members' addresses"),
            ({"expect_epoch": 0, "members": [member(1)]}, "at least 2"),
            ({"expect_epoch": 7, "members": [member(1), member(2)]}, "not 7"),
        ]:
            code, body = post(primary, bad)
            self.assertEqual(code, 400, (bad, body))
            self.assertIn(why, body.get("error", ""), bad)
        # A group most of which are not current members cannot work at once.
        strangers = [member(1), dict(member(2), id=40, peer_port=9), dict(member(3), id=41,
                                                                           peer_port=10)]
        code, body = post(primary, {"expect_epoch": 0, "members": strangers})
        self.assertEqual(code, 503, body)
        self.assertIn("start or repair the missing nodes first", body["error"])
        # The commands refuse what they cannot do before they start anything.
        r = run(self.maroon, "cluster", "remove-node", "--dir", self.dir, "--id", "9")
        self.assertEqual(r.returncode, 1)
        self.assertIn("has no node 9", r.stderr)
        self.assertFalse([f for f in os.listdir(self.dir) if ".join-" in f or f == "node-4"],
                         "a refused command left files behind")
        # Nothing changed.
        self.assertEqual(status(primary)["membership"]["epoch"], 0)


if __name__ == "__main__":
    run_tests()
