#!/usr/bin/env python3
"""kill -9 under load: no acknowledged write is missing or doubled.

Concurrent RESP clients write unique keys (SET k v) and increment their own
counters (INCR). The server is SIGKILLed at random moments several times and
restarted on the same data directory. Afterwards every acknowledged SET must
read back exactly, and each counter must read at least the number of
acknowledged INCRs and at most that plus the INCRs whose outcome the client
never learned (at most one per kill, since each client has one in flight).
"""
import argparse
import random
import shutil
import sys
import tempfile
import threading
import time

from maroon_proc import Dev, Resp


def client_loop(port, cid, stop, state):
    """Runs until stop is set or the connection breaks; updates state."""
    try:
        conn = Resp(port, timeout=10)
    except OSError:
        return
    try:
        while not stop.is_set():
            seq = state["next_seq"]
            key, value = "c%d-k%d" % (cid, seq), "v%d-%d" % (cid, seq)
            state["pending_set"] = (key, value)
            if conn.call("SET", key, value) != "OK":
                raise AssertionError("SET %s did not reply OK" % key)
            state["acked_sets"][key] = value
            state["pending_set"] = None
            state["next_seq"] = seq + 1
            state["pending_incr"] = True
            n = conn.call("INCR", "counter-%d" % cid)
            state["pending_incr"] = False
            state["acked_incrs"] += 1
            if n < state["acked_incrs"]:
                raise AssertionError("INCR returned %d after %d acks" % (n, state["acked_incrs"]))
    except (ConnectionError, OSError):
        pass  # the server was killed; the in-flight op's outcome is unknown
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maroon", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--kills", type=int, default=4)
    ap.add_argument("--seconds-per-round", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    print("crash_test: seed %d, %d clients, %d kills" % (args.seed, args.clients, args.kills))

    work = tempfile.mkdtemp(prefix="maroon-crash-")
    dev = Dev(args.maroon, work + "/data", work + "/maroon.log")
    states = [{"next_seq": 0, "acked_sets": {}, "pending_set": None, "acked_incrs": 0,
               "pending_incr": False, "unknown_incrs": 0} for _ in range(args.clients)]
    try:
        for round_no in range(args.kills + 1):
            dev.start()
            # Acknowledged state so far must be there after every restart.
            verify(dev, states, final=False)
            stop = threading.Event()
            threads = [threading.Thread(target=client_loop, args=(dev.resp_port, i, stop, states[i]))
                       for i in range(args.clients)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.2, args.seconds_per_round))  # load runs until a random kill moment
            if round_no < args.kills:
                dev.kill9()
            else:
                stop.set()
            for t in threads:
                t.join(timeout=30)
                if t.is_alive():
                    raise AssertionError("a client hung")
            for s in states:
                if s["pending_incr"]:
                    s["unknown_incrs"] += 1
                    s["pending_incr"] = False
            total = sum(len(s["acked_sets"]) for s in states)
            print("round %d: %d acknowledged SETs, %d acknowledged INCRs so far" %
                  (round_no, total, sum(s["acked_incrs"] for s in states)), flush=True)
        verify(dev, states, final=True)
        code = dev.terminate()
        if code != 0:
            raise AssertionError("graceful shutdown exited with %s" % code)
        dev.start()
        verify(dev, states, final=True)
        dev.terminate()
        print("crash_test: 1 passed, 0 failed")
        return 0
    except AssertionError as e:
        print("crash_test FAILED (seed %d): %s; log in %s" % (args.seed, e, work))
        return 1
    finally:
        dev.kill9()
        if "--keep" not in sys.argv:
            shutil.rmtree(work, ignore_errors=True)


def verify(dev, states, final):
    conn = Resp(dev.resp_port)
    try:
        checked = 0
        for cid, s in enumerate(states):
            keys = list(s["acked_sets"].items())
            for i in range(0, len(keys), 200):
                chunk = keys[i:i + 200]
                got = conn.call("MGET", *[k for k, _ in chunk])
                for (k, v), g in zip(chunk, got):
                    if g != v:
                        raise AssertionError("acknowledged SET %s=%s reads %r" % (k, v, g))
                    checked += 1
            n = conn.call("GET", "counter-%d" % cid)
            n = int(n) if n is not None else 0
            lo, hi = s["acked_incrs"], s["acked_incrs"] + s["unknown_incrs"]
            if not lo <= n <= hi:
                raise AssertionError("counter-%d reads %d; acknowledged %d, unknown %d" %
                                     (cid, n, s["acked_incrs"], s["unknown_incrs"]))
            # Learn the outcome of unknown INCRs so later rounds check exactly.
            s["acked_incrs"], s["unknown_incrs"] = n, 0
    finally:
        conn.close()
    return checked


if __name__ == "__main__":
    sys.exit(main())
