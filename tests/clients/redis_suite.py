#!/usr/bin/env python3
"""Redis's own test suite (units unit/protocol and unit/multi) against maroon.

Runs the suite's Tcl runner from Debian's Redis source package
(scripts/install-deps.sh fetches it) in its external-server mode:

    tclsh tests/test_helper.tcl --host 127.0.0.1 --port P --singledb --durable ...

against a fresh `maroon dev` (or, with --redis-server, a stock redis-server,
which must pass everything that is not skipped). Tests named in the skip list
(redis_suite_skips.txt; see its header for the policy) are not run. Fails
when any test that ran failed, printing the failing tests, or when the runner
could not get through the units.

What the suite itself sends in external mode, before any test: FLUSHALL and
FUNCTION FLUSH at the start of every start_server block (--singledb saves the
SELECT 9 it would send otherwise), and DEBUG LOG before each test (its error
is ignored).
"""
import argparse
import glob
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from servers import add_server_args, server_under_test

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = ["unit/protocol", "unit/multi"]
# The suite's own watchdog: seconds without any test finishing before it
# gives up (its default is 20 minutes).
NO_PROGRESS_TIMEOUT_S = 120
RUN_TIMEOUT_S = 480  # under the ctest TIMEOUT (600), so this script cleans up itself

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RESULT = re.compile(r"^\[(ok|err|skip|ignore|exception)\]: (.*)$")


def find_source(redis_src):
    """The folder holding tests/test_helper.tcl: redis_src itself or one redis-*/ inside it."""
    for root in [redis_src] + sorted(glob.glob(os.path.join(redis_src, "redis-*"))):
        if os.path.isfile(os.path.join(root, "tests", "test_helper.tcl")):
            return root
    return None


def suite_baseport():
    """A --baseport for this run.

    The suite's runner listens for its test client on the first free port
    below --baseport (and needs that port + 10000 free too); runs at once
    with the same base race for the same port. A random base among 10,000
    keeps concurrent runs apart.
    """
    return random.SystemRandom().randrange(20000, 30000)


def read_skips(path):
    """(denied tags, skipped test names) from the skip list."""
    tags, names = [], []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line.startswith("-tag "):
                tags.append(line[len("-tag "):].strip())
            else:
                names.append(line)
    return tags, names


def main():
    ap = argparse.ArgumentParser()
    add_server_args(ap)
    ap.add_argument("--redis-src", required=True,
                    help="Redis's source (apt-get source redis), or a folder holding one redis-*/ source")
    ap.add_argument("--skips", default=os.path.join(HERE, "redis_suite_skips.txt"))
    ap.add_argument("--only", action="append", default=[], help="run only this test (repeatable)")
    ap.add_argument("--unit", action="append", default=[], help="a unit to run instead of %s" % " ".join(UNITS))
    args = ap.parse_args()

    source = find_source(args.redis_src)
    if source is None:
        print("FAIL: no Redis test suite (tests/test_helper.tcl) under %s: run scripts/install-deps.sh"
              % args.redis_src)
        return 1
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        print("FAIL: tclsh is missing: run scripts/install-deps.sh (Debian package tcl)")
        return 1
    deny_tags, skip_names = read_skips(args.skips)
    units = args.unit or UNITS

    work = tempfile.mkdtemp(prefix="maroon-redis-suite-")
    try:
        # A private copy: the runner writes into tests/tmp, and two runs (say
        # against maroon and against redis-server) may go at once.
        shutil.copytree(os.path.join(source, "tests"), os.path.join(work, "tests"), symlinks=True)
        skipfile = os.path.join(work, "skips.txt")
        with open(skipfile, "w") as f:
            f.write("\n".join(skip_names) + "\n")
        with server_under_test(args) as port:
            cmd = [tclsh, "tests/test_helper.tcl", "--host", "127.0.0.1", "--port", str(port),
                   "--singledb", "--durable", "--clients", "1", "--timeout", str(NO_PROGRESS_TIMEOUT_S),
                   "--baseport", str(suite_baseport()),
                   "--skipfile", skipfile, "--tags", " ".join("-" + t for t in deny_tags)]
            for unit in units:
                cmd += ["--single", unit]
            for name in args.only:
                cmd += ["--only", name]
            print("running:", " ".join(cmd[:8]), "...", flush=True)
            code, results, output = run_suite(cmd, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    counts = {k: sum(1 for kind, _ in results if kind == k) for k in ("ok", "err", "skip", "ignore")}
    failed = [name for kind, name in results if kind in ("err", "exception")]
    print()
    if failed:
        print("Failed tests:")
        for name in failed:
            print("  " + name)
    if code != 0 and not failed:
        print("The suite's runner exited with %d without naming a failed test; its output:" % code)
        print(output[-6000:])
    if counts["ok"] == 0 and not failed:
        print("No test ran.")
    print("redis-suite: %d passed, %d failed, %d skipped" % (counts["ok"], len(failed),
                                                             counts["skip"] + counts["ignore"]))
    return 0 if (code == 0 and not failed and counts["ok"] > 0) else 1


def run_suite(cmd, cwd):
    """Runs the Tcl runner, echoing its output; returns (exit code, [(kind, test)], output)."""
    env = dict(os.environ, TERM="dumb")  # no colours in the output we parse
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True)
    timed_out = threading.Event()

    def kill_all():
        # The runner and its test client share the runner's session.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def on_deadline():
        timed_out.set()
        kill_all()

    watchdog = threading.Timer(RUN_TIMEOUT_S, on_deadline)
    watchdog.start()
    results, lines = [], []
    detail_lines = 0
    try:
        for line in proc.stdout:
            line = ANSI.sub("", line.rstrip("\n"))
            print(line, flush=True)
            lines.append(line)
            m = RESULT.match(line)
            if m:
                kind, rest = m.groups()
                if kind == "ok":
                    rest = re.sub(r" \(\d+ ms\)$", "", rest)
                elif kind == "err":
                    rest = re.sub(r" in tests/\S+$", "", rest)
                results.append((kind, rest))
                detail_lines = 0
            elif results and results[-1][0] in ("err", "exception") and detail_lines < 2 and line.strip():
                # The first lines after a failure say why; keep them for the summary.
                kind, rest = results[-1]
                results[-1] = (kind, rest + "\n      " + line.strip())
                detail_lines += 1
        code = proc.wait()
    finally:
        watchdog.cancel()
        kill_all()  # nothing of the run may outlive it
        proc.wait()
    if timed_out.is_set():
        results.append(("exception", "the suite did not finish within %d s" % RUN_TIMEOUT_S))
    return code, results, "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
