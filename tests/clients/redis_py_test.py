#!/usr/bin/env python3
"""redis-py (Debian's python3-redis) with its default settings.

Run through run_with_server.py, which gives the server's port as
TEST_RESP_PORT. Every effect is read back over a second, separate connection.
"""
import os
import signal
import unittest

try:
    import redis
except ImportError:
    raise SystemExit("redis-py is missing: run scripts/install-deps.sh (Debian package python3-redis)")

HOST = "127.0.0.1"
PORT = int(os.environ["TEST_RESP_PORT"])
# redis-py waits for a reply without a timeout by default; a test that has not
# finished after this long fails instead of hanging the run.
TEST_TIMEOUT_S = 30


def _timed_out(signum, frame):
    raise TimeoutError("no reply within %d s" % TEST_TIMEOUT_S)


class RedisPyTest(unittest.TestCase):
    def setUp(self):
        signal.signal(signal.SIGALRM, _timed_out)
        signal.alarm(TEST_TIMEOUT_S)
        self.r = redis.Redis(HOST, PORT)  # the defaults: RESP2, transaction=True pipelines
        self.other = redis.Redis(HOST, PORT)

    def tearDown(self):
        signal.alarm(0)
        self.r.close()
        self.other.close()

    def test_ping_set_get(self):
        self.assertTrue(self.r.ping())
        self.assertTrue(self.r.set("py:a", "1"))
        self.assertEqual(self.r.get("py:a"), b"1")
        self.assertIsNone(self.r.get("py:missing"))
        self.assertEqual(self.other.get("py:a"), b"1")

    def test_mget_of_10000_keys(self):
        keys = ["py:many:%d" % i for i in range(10000)]
        for start in range(0, len(keys), 500):  # MSETs of 500 pairs: the size under test is the MGET's
            self.assertTrue(self.r.mset({k: k.upper() for k in keys[start:start + 500]}))
        values = self.r.mget(keys)
        self.assertEqual(len(values), 10000)
        self.assertEqual(values[0], b"PY:MANY:0")
        self.assertEqual(values[9999], b"PY:MANY:9999")
        self.assertEqual(values, [k.upper().encode() for k in keys])

    def test_5_mib_value(self):
        value = bytes(range(256)) * (5 * 1024 * 1024 // 256)
        self.assertTrue(self.r.set("py:big", value))
        self.assertEqual(self.other.get("py:big"), value)
        self.assertTrue(self.r.ping())

    def test_pipeline_is_a_transaction_applied_once(self):
        self.r.set("py:ctr", 10)
        with self.r.pipeline() as p:
            p.incr("py:ctr").incr("py:ctr").incrby("py:ctr", 5).get("py:ctr").incr("py:ctr2")
            self.assertEqual(p.execute(), [11, 12, 17, b"17", 1])
        self.assertEqual(self.other.get("py:ctr"), b"17")
        self.assertEqual(self.other.get("py:ctr2"), b"1")

    def test_pipeline_with_a_command_refused_at_queue_time_applies_nothing(self):
        with self.r.pipeline() as p:
            p.set("py:tx:a", "1")
            p.execute_command("INCR")  # wrong number of arguments: refused while queueing
            p.set("py:tx:b", "2")
            with self.assertRaises(redis.exceptions.ResponseError) as cm:
                p.execute()
        self.assertIn("wrong number of arguments", str(cm.exception))
        self.assertEqual(self.other.exists("py:tx:a", "py:tx:b"), 0)
        self.assertTrue(self.r.ping())  # the connection left MULTI state

    def test_watch_sees_a_concurrent_change(self):
        self.r.set("py:w", "1")
        with self.r.pipeline() as p:
            p.watch("py:w")
            seen = int(p.get("py:w"))
            self.other.set("py:w", "100")  # another connection changes the watched key
            p.multi()
            p.set("py:w", seen + 1)
            with self.assertRaises(redis.exceptions.WatchError):
                p.execute()
        self.assertEqual(self.other.get("py:w"), b"100")

    def test_watch_without_a_change_commits(self):
        self.r.set("py:w2", "1")
        with self.r.pipeline() as p:
            p.watch("py:w2")
            seen = int(p.get("py:w2"))
            p.multi()
            p.set("py:w2", seen + 1)
            self.assertEqual(p.execute(), [True])
        self.assertEqual(self.other.get("py:w2"), b"2")

    def test_client_setname_getname(self):
        self.assertIsNone(self.r.client_getname())
        self.assertTrue(self.r.client_setname("maroon-py"))
        self.assertEqual(self.r.client_getname(), "maroon-py")
        self.assertIsNone(self.other.client_getname())

    def test_unknown_client_subcommand_is_an_error(self):
        with self.assertRaises(redis.exceptions.ResponseError) as cm:
            self.r.execute_command("CLIENT", "NO-SUCH-SUBCOMMAND")
        self.assertIn("unknown subcommand", str(cm.exception).lower())

    def test_client_reply_off_silences_replies_until_on(self):
        conn = self.r.connection_pool.get_connection("CLIENT")
        try:
            conn.send_command("CLIENT", "REPLY", "OFF")  # no reply, nor to the SET
            conn.send_command("SET", "py:quiet", "1")
            conn.send_command("CLIENT", "REPLY", "ON")
            self.assertEqual(conn.read_response(), b"OK")
            conn.send_command("PING")
            self.assertEqual(conn.read_response(), b"PONG")
        finally:
            conn.disconnect()  # replies may be left unread when the test fails
            self.r.connection_pool.release(conn)
        self.assertEqual(self.other.get("py:quiet"), b"1")


if __name__ == "__main__":
    unittest.main(verbosity=2)
