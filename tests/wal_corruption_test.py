#!/usr/bin/env python3
"""A damaged record in the middle of the WAL stops the node loudly.

Writes keys one at a time (so the WAL holds many batches), stops the node,
flips a byte early in the first segment (later batches are intact, so this
cannot be a torn tail), and checks that a restart refuses to serve, naming
the segment file and offset, instead of silently dropping data. Then the
same for a log that lost files: without its segment, or without its
superblock, the node refuses to start rather than serve an empty store or
make a new identity over the old log.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

from maroon_proc import Dev, Resp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--maroon", required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="maroon-walc-")
    dev = Dev(args.maroon, work + "/data", work + "/maroon.log")
    try:
        dev.start()
        conn = Resp(dev.resp_port)
        for i in range(300):
            assert conn.call("SET", "k%d" % i, "v%d" % i) == "OK"
        conn.close()
        assert dev.terminate() == 0, "graceful stop failed"
        segments = sorted(glob.glob(work + "/data/wal/wal-*.log"))
        assert segments, "no WAL segment found"
        with open(segments[0], "r+b") as f:
            # Batches start on 4 KiB blocks after a one-block header; each
            # SET here is its own one-block batch, so this lands in a record.
            f.seek(4096 * 10 + 30)
            b = f.read(1)
            f.seek(4096 * 10 + 30)
            f.write(bytes([b[0] ^ 0xFF]))
        def start_error(what):
            try:
                proc = subprocess.run([args.maroon, "dev", "--data-dir", work + "/data",
                                       "--http-port", str(dev.http_port), "--resp-port", str(dev.resp_port),
                                       "--native-port", str(dev.native_port)],
                                      capture_output=True, text=True, timeout=20)
            except subprocess.TimeoutExpired:
                raise AssertionError("the node started serving " + what)
            out = proc.stdout + proc.stderr
            assert proc.returncode != 0, what + " was served: " + out
            errors = [l for l in out.splitlines() if "cannot start" in l]
            assert errors, "no start error in: " + out
            assert "corruption" in errors[0], errors[0]
            print("wal_corruption_test: %s refused with: %s" % (what, errors[0]))
            return errors[0]

        error = start_error("a corrupt WAL")
        assert os.path.basename(segments[0]) in error, "the error must name the segment: " + error
        # The segment gone (a lost file, an operator's mistake): before, the
        # node replayed 0 records and served an empty store.
        shutil.copy(segments[0], work + "/segment.bak")
        os.remove(segments[0])
        assert "the log is missing" in start_error("a missing log")
        # The superblock gone: before, a new identity was written over the log.
        shutil.copy(work + "/segment.bak", segments[0])
        os.remove(work + "/data/superblock")
        assert "new identity" in start_error("a log without its superblock")
        print("wal_corruption_test: 3 passed, 0 failed")
        return 0
    except AssertionError as e:
        print("wal_corruption_test FAILED: %s (files in %s)" % (e, work))
        return 1
    finally:
        dev.kill9()
        if "--keep" not in sys.argv:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
