"""Registers through a backend, prints READY, then idles until killed.

Run by the conformance suite as ``python _child.py SPEC_JSON``.
"""

from __future__ import annotations

import json
import sys
import time

import sd_core


def main() -> None:
    spec = json.loads(sys.argv[1])
    registration = sd_core.Registration(**spec["registration"])
    registrar = sd_core.registrar(spec["backend"], registration, **spec["options"])
    registrar.register()
    print("READY", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
