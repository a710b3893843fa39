#!/usr/bin/env python3
"""Two processes started at once on one fresh data directory: exactly one runs.

The data directory's LOCK is taken before anything is written there, so the
loser refuses with a clear message and leaves no trace: the winner's data
(its identity, its writes) is the directory's, and a restart finds it whole.
Before, the identity was written before the lock, and two processes racing
on a fresh directory could both write one.
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
import time

from maroon_proc import Dev, Resp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maroon", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="maroon-lock-")
    devs = []
    try:
        for round_ in range(args.rounds):
            data = "%s/data%d" % (work, round_)
            a = Dev(args.maroon, data, "%s/a%d.log" % (work, round_))
            b = Dev(args.maroon, data, "%s/b%d.log" % (work, round_))
            devs += [a, b]
            procs = []
            for d in (a, b):
                with open(d.log_path, "wb") as log:
                    d.proc = subprocess.Popen(
                        [d.binary, "dev", "--data-dir", d.data_dir, "--http-port", str(d.http_port),
                         "--resp-port", str(d.resp_port), "--native-port", str(d.native_port)],
                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                procs.append(d)
            # The loser exits; the winner serves.
            deadline = time.monotonic() + 30
            loser = None
            while time.monotonic() < deadline and loser is None:
                for d in procs:
                    if d.proc.poll() is not None:
                        loser = d
                time.sleep(0.02)
            assert loser is not None, "both processes kept running on one data directory"
            winner = b if loser is a else a
            with open(loser.log_path) as f:
                out = f.read()
            assert loser.proc.returncode != 0, "the loser exited 0: " + out
            assert "in use by another maroon process" in out, "unclear refusal: " + out
            assert winner.proc.poll() is None, "the winner exited too; see " + winner.log_path
            # The winner serves, and its data survives a restart.
            winner.wait_serving()
            conn = Resp(winner.resp_port)
            assert conn.call("SET", "k", "round %d" % round_) == "OK"
            conn.close()
            assert winner.terminate() == 0, "graceful stop failed"
            again = Dev(args.maroon, data, "%s/again%d.log" % (work, round_))
            devs.append(again)
            again.start()
            conn = Resp(again.resp_port)
            got = conn.call("GET", "k")
            conn.close()
            assert got == "round %d" % round_, "after the restart: %r" % (got,)
            assert again.terminate() == 0
        print("data_dir_lock_test: %d passed, 0 failed" % args.rounds)
        return 0
    except AssertionError as e:
        print("data_dir_lock_test FAILED: %s (files in %s)" % (e, work))
        return 1
    finally:
        for d in devs:
            d.kill9()
        if "--keep" not in sys.argv:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
