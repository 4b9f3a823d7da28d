#!/usr/bin/env python3
"""Runs the original Duhton's test suite against our interpreter.

    duhton/run-original-tests.py PYPY_STMGC_CHECKOUT [--binary PATH] [--threads 1,2]

The checkout is one of the public mirror hg-mirrors/pypy_stmgc; its tests are the
`duhton/test/test_*.py` files, written for Python 2 and pytest against a `support` module
that runs the interpreter. Nothing of them is copied here: this script reads them from the
checkout, gives them a `support` module of its own that runs our binary (with
`--num-threads N` for each N asked for), adapts the one Python 2 print statement they
contain, and calls every `test_*` function. Exit status 0 when every test passed at every
thread count.
"""

import argparse
import os
import re
import subprocess
import sys
import traceback
import types


def make_support(binary, threads):
    """A `support` module with the interface the original's tests import."""

    def execute(argv, stdin=""):
        cmd = [binary, "--num-threads", str(threads)] + list(argv)
        p = subprocess.run(cmd, input=stdin.encode(), capture_output=True, timeout=600)
        err = p.stderr.decode(errors="replace")
        if p.returncode:
            raise OSError("%r failed (exit code %r)\n%s" % (cmd[0], p.returncode, err.rstrip()))
        if re.sub("\x1b\\[3.m[\\w\\W]*?\x1b\\[0m", "", err):
            raise OSError("%r got on stderr:\n%s" % (cmd[0], err.rstrip()))
        return p.stdout.decode(errors="replace")

    def run(filecontent):
        return execute(["-"], stdin=filecontent)

    def evaluate(expression):
        return eval(execute(["-"], stdin="(print %s)" % expression))

    mod = types.ModuleType("support")
    mod.execute = execute
    mod.run = run
    mod.evaluate = evaluate
    return mod


def py2_to_py3(src):
    """The tests' only Python 2 construct: `print x, y` statements."""
    return re.sub(r"^(\s*)print ([^(].*)$", r"\1print(\2)", src, flags=re.M)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", help="a checkout of hg-mirrors/pypy_stmgc")
    ap.add_argument("--binary", default=None, help="our duhton binary")
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    args = ap.parse_args()
    test_dir = os.path.join(args.checkout, "duhton", "test")
    if not os.path.isdir(test_dir):
        ap.error("no duhton/test in %s" % args.checkout)
    binary = args.binary
    if binary is None:
        target = os.environ.get("CARGO_TARGET_DIR", "target")
        binary = os.path.join(target, "release", "duhton")
    binary = os.path.abspath(binary)
    files = sorted(f for f in os.listdir(test_dir) if re.match(r"test_.*\.py$", f))
    failed = passed = 0
    for threads in [int(t) for t in args.threads.split(",")]:
        sys.modules["support"] = make_support(binary, threads)
        for f in files:
            path = os.path.join(test_dir, f)
            with open(path) as fh:
                code = compile(py2_to_py3(fh.read()), path, "exec")
            ns = {"__name__": f[:-3]}
            exec(code, ns)
            for name in sorted(n for n in ns if n.startswith("test_") and callable(ns[n])):
                try:
                    ns[name]()
                    passed += 1
                except Exception:
                    failed += 1
                    print("FAILED %s::%s (--num-threads %d)" % (f, name, threads))
                    traceback.print_exc(limit=3)
    print("original test suite: %d passed, %d failed (%s)" % (passed, failed, binary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
