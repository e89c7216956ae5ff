"""agentd statusline: the command Claude Code's `statusLine` setting runs (docs/usage.md).

`agentd install claude --statusline` writes `python -I -S .../agentd/statusline.py`. This file
is only the launcher: the work is in statusbar.py, which Python loads from its cached .pyc (a
script is compiled afresh on every run, and this one runs after every assistant message).
"""

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make `agentd` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

try:
    from agentd.statusbar import main
except BaseException as e:  # a broken or half-upgraded agentd: draw a stub, exit 0
    if __name__ != "__main__":
        raise
    os.write(2, f"agentd statusline: cannot load agentd: {e!r}\n".encode())
    os.write(1, b"agentd\n")
    os._exit(0)

__all__ = ["main"]

if __name__ == "__main__":
    main()
