"""The assertions of the client-library scripts beside this file: plain
asserts with a name, no pytest needed, and the one summary line that
cli/tests/server.rs looks for."""

import sys

_passed = 0


def check(name, cond, detail=""):
    """Counts a passed check; on a failed one prints it and exits 1."""
    global _passed
    if not cond:
        print(f"FAILED: {name}: {detail}")
        sys.exit(1)
    _passed += 1


def summary(client):
    """Prints `CLIENT: N passed, 0 failed` (reached only if none failed)."""
    print(f"{client}: {_passed} passed, 0 failed")
