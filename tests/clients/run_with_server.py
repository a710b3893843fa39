#!/usr/bin/env python3
"""Runs one client test program against a fresh server.

    run_with_server.py (--maroon BIN | --redis-server BIN) [--timeout S] -- PROGRAM ARGS...

The server's RESP port reaches the program as TEST_RESP_PORT (host 127.0.0.1).
Exits with the program's status; a program still running after --timeout
seconds is killed and the run fails.
"""
import argparse
import os
import signal
import subprocess
import sys

from servers import add_server_args, server_under_test


def main():
    ap = argparse.ArgumentParser()
    add_server_args(ap)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds the program may run")
    ap.add_argument("program", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        ap.error("no program to run")
    with server_under_test(args) as port:
        env = dict(os.environ, TEST_RESP_PORT=str(port))
        proc = subprocess.Popen(program, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            print("FAIL: %s still running after %.0f s; killed" % (program[0], args.timeout), flush=True)
            return 1
    if code != 0:
        print("FAIL: %s exited with %d" % (program[0], code), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
