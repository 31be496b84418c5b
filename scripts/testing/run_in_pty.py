"""Runs a command on a pseudo-terminal and relays what it prints, for tests of terminal-only output.

    python3 run_in_pty.py SECONDS COMMAND [ARG ...]

The command's terminal output (stdout and stderr share the terminal) is copied to this script's stdout
as it arrives; after SECONDS the command gets SIGINT, then SIGKILL if it has not exited 5 s later. The
exit status is the command's (128 + signal if it was killed).
"""

import os
import pty
import select
import signal
import sys
import time


def main() -> int:
    seconds = float(sys.argv[1])
    command = sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.execvp(command[0], command)
    deadline = time.monotonic() + seconds
    interrupted_at = None
    status = None
    while status is None:
        now = time.monotonic()
        if interrupted_at is None and now >= deadline:
            os.kill(pid, signal.SIGINT)
            interrupted_at = now
        elif interrupted_at is not None and now >= interrupted_at + 5:
            os.kill(pid, signal.SIGKILL)
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's other side is closed (the command exited)
                data = b""
            if data:
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(raw)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
