#!/usr/bin/env python3
"""Runs every cmocka unit-test binary given on the command line and prints one
summary line, 'N passed, N failed', counting individual test cases."""
import re
import subprocess
import sys

passed = failed = 0
bad_binaries = []
for binary in sys.argv[1:]:
    proc = subprocess.run([binary], capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    sys.stdout.write(out)
    p = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", out))
    f = sum(int(n) for n in re.findall(r"\[  FAILED  \] (\d+) test", out))
    if proc.returncode != 0 and f == 0:
        f = 1  # crashed or sanitizer report: count the binary as one failure
        bad_binaries.append(binary)
    passed += p
    failed += f
for b in bad_binaries:
    print(f"{b}: exited abnormally")
print(f"unit: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
