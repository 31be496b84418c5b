"""The README's "Try it by hand" block, run verbatim: every command as written, in order, in one bash.

Run by ./scripts/test after the Swift suites (the block's first line is then a no-op build). Needs the
AWS CLI on PATH, python3 and curl, and the ports and directories the README names to be free.
"""
import os
import re
import signal
import socket
import subprocess
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORTS = (8443, 8000, 1213, 1214)


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try it by hand", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "README.md: no ```bash block under '## Try it by hand'"
    return match.group(1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def pid_in(path: str):
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class ReadmeWalkthrough(unittest.TestCase):
    def setUp(self):
        for path in ("/tmp/gw/gateway.lock", "/tmp/agent/agent.pid"):
            pid = pid_in(path)
            if pid and alive(pid):
                self.fail(f"{path} names a running process ({pid}); stop it before running this test")
        for port in PORTS:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    self.fail(f"port {port}, which the README uses, is taken; free it before running this test")
        subprocess.run(["rm", "-rf", "/tmp/gw", "/tmp/agent"], check=True)

    def test_try_it_by_hand(self):
        script = walkthrough()
        print(f"Running README.md's 'Try it by hand' block ({len(script.splitlines())} lines) with bash -e")
        env = dict(os.environ)
        # As a new user's shell: no CA or endpoint settings of this machine's leak into the walkthrough.
        for name in ("AWS_CA_BUNDLE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM", "AWS_PROFILE", "AWS_REGION",
                     "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "JUMPGATE_LOG_LEVEL"):
            env.pop(name, None)
        process = subprocess.Popen(["bash", "-e", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            # communicate() returns once every process holding the pipes exited: the shell, and the
            # session-manager-plugin the AWS CLI started, which must end its session and exit by itself
            # once step 4 kills the AWS CLI (a plugin that outlived it would hold them: a timeout here).
            try:
                out, err = process.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                self.fail("the walkthrough, or a process it started (the plugin, after the AWS CLI was killed?), "
                          "did not finish within 300 s")
            print(out)
            print(err)
            self.assertEqual(process.returncode, 0, "the walkthrough failed; its output is above")
            self.assertIn("Jumpgate gateway ready at https://127.0.0.1:8443", out)
            self.assertIn("Jumpgate agent mi-", out)
            self.assertIn("HTTP 200 through port 1213", out)
            self.assertIn("HTTP 200 through port 1214", out)
            self.assertRegex(out, r"Starting session with SessionId: \S+")
            self.assertRegex(out, r"mi-[0-9a-f]{17}\s+127\.0\.0\.1:8000\s+Connected",
                             "sessions list shows the AWS CLI's session while it is open")
            # awscli >= 1.46.1 warns about plugins below 1.2.764.0 (test_plugin_version has the positive
            # control).
            self.assertNotIn("outdated SessionManagerPlugin", err)
            self.assertNotIn("Error:", err)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for path in ("/tmp/agent/agent.pid", "/tmp/gw/gateway.lock"):
                pid = pid_in(path)
                if pid and alive(pid):
                    os.kill(pid, signal.SIGTERM)


class PluginVersion(unittest.TestCase):
    def test_plugin_version(self):
        """The installed AWS CLI's own outdated-plugin check passes Jumpgate's plugin, and rejects 1.2.707.0
        (the positive control: the check is there and active)."""
        import contextlib
        import io

        from awscli.customizations import sessionmanager
        binaries = subprocess.run(["swift", "build", "-c", "release", "-Xswiftc", "-enable-testing",
                                   "--show-bin-path"], cwd=ROOT, capture_output=True, text=True, check=True)
        plugin = Path(binaries.stdout.strip()) / "session-manager-plugin"
        version = subprocess.run([str(plugin), "--version"], capture_output=True, text=True, check=True).stdout
        caller = sessionmanager.StartSessionCaller.__new__(sessionmanager.StartSessionCaller)
        for reported, warned in ((version, False), ("1.2.707.0\n", True)):
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr):
                caller._warn_if_plugin_version_is_outdated(reported)
            self.assertEqual("outdated SessionManagerPlugin" in stderr.getvalue(), warned, reported)


if __name__ == "__main__":
    unittest.main()
