"""What the measuring scripts share: scripts/bench-forwarder (gateway, agent and `jumpgate forward`, default flags,
audit on) started in front of an echo server on 127.0.0.1, its three processes found, and stopped again.
Imported by scripts/memory-idle, scripts/symbol-order, scripts/memory-after-transfer and scripts/bench-concurrent (a script's own
directory is on Python's path)."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How each of the three shows in `ps`: by the subcommand on its command line.
ROLES = (("gateway", " server "), ("agent", " agent run "), ("client", " forward "))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo_server():
    """A threaded echo server on 127.0.0.1 for the life of the script; returns its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)

    def serve(conn):
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def echo(port, payload):
    """Sends `payload` through a new connection to `port` and reads it back whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            data = conn.recv(65536)
            if not data:
                raise OSError("closed before the echo")
            got += data


def processes(group):
    """{role: pid} of the gateway, agent and client in process group `group`; exits unless all three are there."""
    listing = subprocess.run(["ps", "-eo", "pid,pgid,args"], capture_output=True, text=True).stdout
    found = {}
    for line in listing.splitlines()[1:]:
        pid, pgid, args = line.split(None, 2)
        if int(pgid) == group and "jumpgate" in args:
            for role, pattern in ROLES:
                if pattern in args + " ":
                    found[role] = int(pid)
    if len(found) != 3:
        sys.exit(f"found {found}, not the three processes")
    return found


def stop(forwarder):
    """SIGTERM to the forwarder's process group (only what it started), then wait for the script."""
    try:
        os.killpg(forwarder.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended already (whatever stopped the caller says why)
    forwarder.wait(timeout=60)


class Forwarder:
    """`with Forwarder(target, env) as f:` scripts/bench-forwarder listening on `f.port` in front of `target`,
    answering (one echo went through, within 60 s), its processes in `f.pids` ({role: pid}); stopped on exit.
    `env` is the whole environment (JUMPGATE_BIN picks the build)."""

    def __init__(self, target, env):
        self.target, self.env, self.port = target, env, free_port()

    def __enter__(self):
        self.process = subprocess.Popen(
            [f"{ROOT}/scripts/bench-forwarder", f"127.0.0.1:{self.port}", f"127.0.0.1:{self.target}"],
            env=self.env,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    echo(self.port, b"x")
                    break
                except OSError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        sys.exit("the forwarder did not answer within 60 s")
                    time.sleep(0.2)
            self.pids = processes(self.process.pid)
        except BaseException:
            stop(self.process)
            raise
        return self

    def __exit__(self, *_):
        stop(self.process)
