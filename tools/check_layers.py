#!/usr/bin/env python3
"""Fails when a source file includes a header of a layer above its own.

The data path is layered, each layer built on the ones below it:

    core ← http ← snapshot ← balance ← affinity ← proxy

  core      event loop, timers, buffers, slabs, worker threads, listeners, logs
  http      HTTP/1.x parsing, cookies
  snapshot  the typed configuration and the published, immutable snapshot
  balance   steering, Maglev, routing a request to a pool and an origin
  affinity  session keys, the affinity cookie, failover and drain decisions
  proxy     client and origin connections, exchanges

A lower layer hands work up through a callback, never by name. The control
side (config — the parser, health, admin, control) may include the data path,
but the data path never includes the control side. demo/ stands alone (on
core and http), and main.c and tools/ sit on top of everything.

Usage: tools/check_layers.py [SRC_DIR]   (prints each violation; exit 1 if any)
"""
import re
import sys
from pathlib import Path

DATA_PATH = ["core", "http", "snapshot", "balance", "affinity", "proxy"]
CONTROL_SIDE = {"config", "health", "admin", "control"}
DEMO_MAY_USE = {"core", "http", "demo"}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)


def allowed(layer, target):
    """Whether a file of `layer` may include a header of `target`."""
    if layer == target:
        return True
    if layer in DATA_PATH:
        return target in DATA_PATH and DATA_PATH.index(target) < DATA_PATH.index(layer)
    if layer == "demo":
        return target in DEMO_MAY_USE
    if layer == "config":  # a pure parser: into the snapshot's typed configuration
        return target in ("core", "http", "snapshot")
    return True  # health, admin, control: the control side sits above the data path


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    problems = []
    for path in sorted(src.rglob("*.[ch]")):
        rel = path.relative_to(src)
        if len(rel.parts) < 2:
            continue  # main.c: on top of everything
        layer = rel.parts[0]
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in INCLUDE.finditer(text):
            target = m.group(1)
            if not allowed(layer, target):
                line = text.count("\n", 0, m.start()) + 1
                problems.append(f"{path}:{line}: {layer}/ includes {m.group(0).strip()[9:]}"
                                f" ({target}/ is not below {layer}/)")
    for p in problems:
        print(p)
    print(f"layers: {len(problems)} violation(s)" if problems else "layers: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
