"""A render child that breaks the protocol on purpose, started by the sandbox tests in place of the real one.

``python -m tests.unit.prepare.misbehaving_render_child``: the ``dpi`` of the limits in its start line
picks the misbehaviour (the child is given no environment to read a choice from):

- dpi 1: exits before it is ready
- dpi 2: takes the document, then answers with a line that is not an event
- dpi 3: takes the document, then answers ``done`` for another document
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    start = json.loads(sys.stdin.readline())
    behaviour = start["limits"]["dpi"]
    if behaviour == 1:
        return 0
    sys.stdout.write(json.dumps({"event": "ready", "seq": 0, "retire": False}) + "\n")
    sys.stdout.flush()
    request = json.loads(sys.stdin.readline())
    sys.stdout.write(json.dumps({"event": "started", "seq": request["seq"], "retire": False}) + "\n")
    if behaviour == 2:
        sys.stdout.write("this is not json\n")
    else:
        sys.stdout.write(json.dumps({"event": "done", "seq": request["seq"] + 7, "retire": False}) + "\n")
    sys.stdout.flush()
    sys.stdin.readline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
