#!/usr/bin/env python3
"""The Jumpgate lab: the seed scenario's private network on one Linux machine.

Network namespaces and veth pairs make a "VPC" (addresses in 198.18.0.0/15) with two private subnets,
a jump server running `jumpgate agent`, a MariaDB server standing in for RDS and moto's SQS behind TLS
standing in for the SQS interface endpoint. nftables plays the security groups. The gateway runs
outside the VPC, in the root namespace, on the "uplink" address 198.19.0.1, as it would in the cloud.

    scripts/lab.py up            build the lab (a second `up` on a healthy lab only re-prints lab.env)
    scripts/lab.py down          remove every namespace, veth, nftables table and process it made
    scripts/lab.py status        say what is up
    scripts/lab.py walkthrough   the seed's steps against a running lab (what ./scripts/demo runs)

Needs root (namespaces, nftables). Everything it starts is recorded by PID in .lab/ and stopped by
PID; everything it creates is named jglab-*. Outputs go to .lab/lab.env, like the seed's CloudFormation
stack outputs. docs/LAB.md explains the topology.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "jglab"
NS_ROUTER, NS_JUMP, NS_DB, NS_SQS = (f"{PREFIX}-{n}" for n in ("router", "jump", "db", "sqs"))
NAMESPACES = [NS_ROUTER, NS_JUMP, NS_DB, NS_SQS]
HOST_LINK = f"{PREFIX}-up"

# Addresses (all in 198.18.0.0/15, the range reserved for network benchmarking).
VPC_CIDR = "198.18.0.0/16"
UPLINK_HOST, UPLINK_ROUTER = "198.19.0.1", "198.19.0.2"  # the "outside", where the gateway runs
SUBNET_A_GW, SUBNET_B_GW = "198.18.1.1", "198.18.2.1"  # private subnet 1 and 2 (the VPC router)
JUMP_IP, SQS_IP, DB_IP = "198.18.1.10", "198.18.1.20", "198.18.2.10"

DB_HOSTNAME = "labdb.c0ffee12abcd.us-east-1.rds.amazonaws.com"  # resolves inside the VPC only
SQS_HOSTNAME = "sqs.us-east-1.amazonaws.com"  # the interface endpoint's private DNS name
DB_NAME, DB_USER = "labdb", "admin"
QUEUE_NAME = "FilaTeste"
REGION = "us-east-1"


def log(message: str) -> None:
    print(message, flush=True)


def show(command: list[str] | str, env_prefix: str = "") -> None:
    text = command if isinstance(command, str) else shlex.join(command)
    print(f"$ {env_prefix}{text}", flush=True)


class LabError(Exception):
    """A step failed; the message says which and why."""


def run(cmd: list[str], check: bool = True, capture: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as error:
        raise LabError(f"`{shlex.join(cmd)}` did not finish within {timeout:.0f} s") from error
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-5:]
        raise LabError(f"`{shlex.join(cmd)}` failed (exit {result.returncode}): {' | '.join(detail)}")
    return result


def in_ns(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def venv_bin(name: str) -> str:
    candidate = ROOT / ".venv" / "bin" / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise LabError(f"{name} is not installed (./scripts/demo installs it into .venv)")
    return found


def jumpgate_bin_dir() -> Path:
    configured = os.environ.get("JUMPGATE_BIN")
    if configured:
        return Path(configured)
    result = run(["swift", "build", "-c", "release", "-Xswiftc", "-enable-testing", "--show-bin-path"], cwd=ROOT)
    return Path(result.stdout.strip())


@dataclass
class Paths:
    base: Path

    @property
    def state(self) -> Path:
        return self.base / "state.json"

    @property
    def env(self) -> Path:
        return self.base / "lab.env"

    def __getattr__(self, name: str) -> Path:  # gateway, agent, db, sqs, logs: sub-directories
        return self.base / name


def lab_dir() -> Paths:
    return Paths(Path(os.environ.get("JUMPGATE_LAB_DIR", ROOT / ".lab")).resolve())


# ---------------------------------------------------------------------------------------------------
# Processes: started in a namespace, recorded by PID, stopped by PID.


def start_process(paths: Paths, name: str, cmd: list[str], env: dict | None = None, stdout: Path | None = None) -> subprocess.Popen:
    paths.logs.mkdir(parents=True, exist_ok=True)
    err = open(paths.logs / f"{name}.log", "ab")
    out = open(stdout, "wb") if stdout else err
    try:
        process = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError as error:
        raise LabError(f"could not start {name} (`{shlex.join(cmd)}`): {error.strerror}") from error
    state = load_state(paths)
    state.setdefault("pids", {})[name] = process.pid
    save_state(paths, state)
    return process


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_pid(pid: int, grace: float = 5) -> None:
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while time.time() < deadline and alive(pid):
        time.sleep(0.05)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for(what: str, probe, timeout: float, log_file: Path | None = None, process: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    hint = lambda: f"; its log says: {tail(log_file)}" if log_file else ""  # noqa: E731
    while time.time() < deadline:
        if probe():
            return
        if process is not None and process.poll() is not None:
            raise LabError(f"{what} exited with status {process.returncode} while starting{hint()}")
        time.sleep(0.2)
    raise LabError(f"{what} did not come up within {timeout:.0f} s{hint()}")


def load_state(paths: Paths) -> dict:
    try:
        return json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return {}


def save_state(paths: Paths, state: dict) -> None:
    paths.base.mkdir(parents=True, exist_ok=True)
    paths.state.write_text(json.dumps(state, indent=2))


def tcp_connects(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ns_tcp_connects(ns: str, host: str, port: int, timeout: float = 2.0) -> bool:
    code = (
        "import socket,sys\n"
        "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
        "except OSError: sys.exit(1)\n"
    )
    return run(in_ns(ns, [sys.executable, "-c", code, host, str(port), str(timeout)]), check=False).returncode == 0


# ---------------------------------------------------------------------------------------------------
# The network.


def existing_namespaces() -> list[str]:
    result = run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX + "-")]


def build_network() -> None:
    ip = lambda *a: run(["ip", *a])  # noqa: E731
    for ns in NAMESPACES:
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    # Uplink: the root namespace (the "outside", where the gateway runs) to the VPC router.
    ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", "uplink", "netns", NS_ROUTER)
    ip("addr", "add", f"{UPLINK_HOST}/30", "dev", HOST_LINK)
    ip("link", "set", HOST_LINK, "up")
    ip("-n", NS_ROUTER, "addr", "add", f"{UPLINK_ROUTER}/30", "dev", "uplink")
    ip("-n", NS_ROUTER, "link", "set", "uplink", "up")
    # The outside can route to the VPC (as the Internet routes to AWS addresses); the firewall is
    # what refuses, exactly as security groups and the absence of an Internet gateway do.
    ip("route", "add", VPC_CIDR, "via", UPLINK_ROUTER, "dev", HOST_LINK)
    # Private subnet 1 (a bridge in the router): the jump server and the SQS interface endpoint.
    ip("-n", NS_ROUTER, "link", "add", "subnet1", "type", "bridge")
    ip("-n", NS_ROUTER, "addr", "add", f"{SUBNET_A_GW}/24", "dev", "subnet1")
    ip("-n", NS_ROUTER, "link", "set", "subnet1", "up")
    for ns, host_ip, port_name, gateway, bridge in (
        (NS_JUMP, JUMP_IP, "r-jump", SUBNET_A_GW, "subnet1"),
        (NS_SQS, SQS_IP, "r-sqs", SUBNET_A_GW, "subnet1"),
        (NS_DB, DB_IP, "subnet2", SUBNET_B_GW, None),
    ):
        ip("-n", NS_ROUTER, "link", "add", port_name, "type", "veth", "peer", "name", "eth0", "netns", ns)
        if bridge:
            ip("-n", NS_ROUTER, "link", "set", port_name, "master", bridge)
        else:
            ip("-n", NS_ROUTER, "addr", "add", f"{SUBNET_B_GW}/24", "dev", port_name)
        ip("-n", NS_ROUTER, "link", "set", port_name, "up")
        ip("-n", ns, "addr", "add", f"{host_ip}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "route", "add", "default", "via", gateway)
    run(in_ns(NS_ROUTER, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
    # VPC-private DNS (Route 53 private zones and the endpoint's private DNS): `ip netns exec` mounts
    # /etc/netns/NS/hosts over /etc/hosts, so these names resolve inside the VPC and nowhere else.
    hosts = f"127.0.0.1 localhost\n{DB_IP} {DB_HOSTNAME}\n{SQS_IP} {SQS_HOSTNAME}\n"
    for ns in (NS_JUMP, NS_DB, NS_SQS):
        directory = Path("/etc/netns") / ns
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts").write_text(hosts)


def apply_firewall(gateway_port: int) -> None:
    """nftables in each namespace plays a security group; the router's forward chain plays the VPC edge."""
    rules = {
        # The VPC edge: nothing from outside opens a connection in; the inside reaches only the gateway.
        NS_ROUTER: f"""
            chain input {{ type filter hook input priority 0; policy drop; iif lo accept; ct state established,related accept; }}
            chain forward {{ type filter hook forward priority 0; policy drop;
                ct state established,related accept
                ip saddr {VPC_CIDR} ip daddr {VPC_CIDR} accept
                ip saddr {VPC_CIDR} ip daddr {UPLINK_HOST} tcp dport {gateway_port} accept
            }}""",
        # The jump server: no inbound at all (it only dials out).
        NS_JUMP: """
            chain input { type filter hook input priority 0; policy drop; iif lo accept; ct state established,related accept; }""",
        # The database security group: 3306 from the jump server only.
        NS_DB: f"""
            chain input {{ type filter hook input priority 0; policy drop; iif lo accept; ct state established,related accept;
                ip saddr {JUMP_IP} tcp dport 3306 accept; }}""",
        # The interface endpoint's security group: 443 from inside the VPC.
        NS_SQS: f"""
            chain input {{ type filter hook input priority 0; policy drop; iif lo accept; ct state established,related accept;
                ip saddr {VPC_CIDR} tcp dport 443 accept; }}""",
    }
    for ns, body in rules.items():
        script = f"table inet {PREFIX} {{{body}\n}}\n"
        run(in_ns(ns, ["nft", "-f", "-"]), input=script)


# ---------------------------------------------------------------------------------------------------
# The services.


def start_database(paths: Paths, password: str) -> None:
    data = paths.db / "data"
    socket_path = paths.db / "mysqld.sock"
    if not (data / "mysql").exists():
        data.mkdir(parents=True, exist_ok=True)
        show(["mariadb-install-db", "--datadir", str(data)])
        run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root", "--auth-root-authentication-method=socket",
             "--skip-test-db"], timeout=120)
    cmd = in_ns(NS_DB, ["mariadbd", "--no-defaults", f"--datadir={data}", "--user=root", f"--bind-address={DB_IP}", "--port=3306",
                        f"--socket={socket_path}", f"--pid-file={paths.db / 'mysqld.pid'}", "--skip-name-resolve",
                        "--skip-log-bin", "--innodb-buffer-pool-size=32M"])
    show(cmd)
    server = start_process(paths, "mariadb", cmd)
    client = ["mariadb", "--no-defaults", f"--socket={socket_path}", "-u", "root"]
    wait_for("MariaDB", lambda: run(client + ["-e", "SELECT 1"], check=False).returncode == 0, 60, paths.logs / "mariadb.log", server)
    sql = (f"CREATE DATABASE IF NOT EXISTS {DB_NAME}; "
           f"CREATE USER IF NOT EXISTS '{DB_USER}'@'%' IDENTIFIED BY '{password}'; "
           f"ALTER USER '{DB_USER}'@'%' IDENTIFIED BY '{password}'; "
           f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'%';")
    run(client + ["-e", sql])


def start_queue_endpoint(paths: Paths) -> str:
    paths.sqs.mkdir(parents=True, exist_ok=True)
    cert, key = paths.sqs / "cert.pem", paths.sqs / "key.pem"
    if not cert.exists():
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
             "-subj", f"/CN={SQS_HOSTNAME}", "-addext", f"subjectAltName=DNS:{SQS_HOSTNAME}", "-keyout", str(key), "-out", str(cert)])
    cmd = in_ns(NS_SQS, [venv_bin("moto_server"), "-H", SQS_IP, "-p", "443", "-c", str(cert), "-k", str(key)])
    show(cmd)
    server = start_process(paths, "sqs-endpoint", cmd)
    wait_for("moto's SQS endpoint", lambda: ns_tcp_connects(NS_SQS, SQS_IP, 443), 60, paths.logs / "sqs-endpoint.log", server)
    create = [venv_bin("aws"), "sqs", "create-queue", "--queue-name", QUEUE_NAME, "--region", REGION,
              "--endpoint-url", f"https://{SQS_HOSTNAME}", "--no-verify-ssl", "--output", "json"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="lab", AWS_SECRET_ACCESS_KEY="lab", PYTHONWARNINGS="ignore")
    show(create)
    result = run(in_ns(NS_SQS, create), env=env)
    return json.loads(result.stdout)["QueueUrl"]


def aws_env(paths: Paths) -> dict:
    return dict(
        os.environ,
        AWS_SHARED_CREDENTIALS_FILE=str(paths.gateway / "admin.credentials"),
        AWS_PROFILE="jumpgate-admin",
        AWS_DEFAULT_REGION=REGION,
        AWS_CA_BUNDLE=str(paths.gateway / "tls" / "ca.pem"),
        PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
    )


def start_gateway(paths: Paths, bin_dir: Path) -> str:
    ready = paths.logs / "gateway.ready"
    cmd = [str(bin_dir / "jumpgate"), "server", "--data-dir", str(paths.gateway), "--listen", f"{UPLINK_HOST}:0", "--format", "json"]
    show(cmd)
    process = start_process(paths, "gateway", cmd, stdout=ready)
    wait_for("the gateway", lambda: ready.exists() and ready.read_text().strip() != "", 30, paths.logs / "gateway.log", process)
    return json.loads(ready.read_text().splitlines()[0])["url"]


def register_agent(paths: Paths, bin_dir: Path, url: str) -> str:
    env = aws_env(paths)
    create = ["aws", "ssm", "create-activation", "--iam-role", "SSMServiceRole", "--default-instance-name", "jump-server",
              "--endpoint-url", url, "--output", "json"]
    show(create)
    activation = json.loads(run(create, env=env).stdout)
    register = [str(bin_dir / "jumpgate"), "agent", "register", "--endpoint-url", url, "--ca-file", str(paths.gateway / "tls" / "ca.pem"),
                "--activation-id", activation["ActivationId"], "--activation-code", activation["ActivationCode"],
                "--state-dir", str(paths.agent), "--name", "jump-server", "--force", "--tag", "Role=jump-server",
                "--allow", f"{VPC_CIDR}:3306", "--allow", f"{VPC_CIDR}:443"]
    show(in_ns(NS_JUMP, register[:8] + ["<ActivationId>", "--activation-code", "<ActivationCode>"] + register[11:]))
    return run(in_ns(NS_JUMP, register)).stdout.strip()


def seed_policy() -> dict:
    """What the seed's engineer may do: sessions through tagged jump servers to the database's 3306 and
    the queue endpoint's 443 only; see the jump servers; list, end and resume their own sessions."""
    document = "arn:aws:ssm:*::document/AWS-StartPortForwardingSessionToRemoteHost"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "JumpServers", "Effect": "Allow", "Action": "ssm:StartSession",
         "Resource": "arn:aws:ssm:*:*:managed-instance/*",
         "Condition": {"StringEquals": {"ssm:resourceTag/Role": "jump-server"}}},
        {"Sid": "Database", "Effect": "Allow", "Action": "ssm:StartSession", "Resource": document,
         "Condition": {"StringEquals": {"jumpgate:RemoteHost": DB_HOSTNAME, "jumpgate:RemotePort": "3306"}}},
        {"Sid": "Queue", "Effect": "Allow", "Action": "ssm:StartSession", "Resource": document,
         "Condition": {"StringEquals": {"jumpgate:RemoteHost": SQS_HOSTNAME, "jumpgate:RemotePort": "443"}}},
        {"Sid": "SeeJumpServers", "Effect": "Allow", "Action": "ssm:DescribeInstanceInformation", "Resource": "*"},
        {"Sid": "OwnSessions", "Effect": "Allow",
         "Action": ["ssm:DescribeSessions", "ssm:TerminateSession", "ssm:ResumeSession"],
         "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*"},
    ]}


def create_user(paths: Paths, bin_dir: Path, url: str) -> Path:
    """The administrator makes the engineer's user, policy and key; the walkthrough runs as that user."""
    env = aws_env(paths)
    jumpgate = str(bin_dir / "jumpgate")
    policy = paths.base / "seed-destinations.json"
    policy.write_text(json.dumps(seed_policy(), indent=2) + "\n")
    for cmd in (["admin", "users", "create", "engineer"],
                ["admin", "policies", "put", "seed-destinations", "--document", str(policy)],
                ["admin", "policies", "attach", "--user", "engineer", "--policy", "seed-destinations"]):
        show(["jumpgate", *cmd])
        run([jumpgate, *cmd, "--endpoint-url", url], env=env)
    credentials = paths.base / "engineer.credentials"
    show(f"jumpgate admin keys create engineer > {credentials}")
    key = run([jumpgate, "admin", "keys", "create", "engineer", "--endpoint-url", url], env=env).stdout
    credentials.write_text(key)
    os.chmod(credentials, 0o600)
    return credentials


def user_env(paths: Paths) -> dict:
    """The engineer's environment: their key, not the administrator's."""
    return dict(aws_env(paths), AWS_SHARED_CREDENTIALS_FILE=str(paths.base / "engineer.credentials"),
                AWS_PROFILE="engineer")


def start_agent(paths: Paths, bin_dir: Path) -> subprocess.Popen:
    cmd = in_ns(NS_JUMP, [str(bin_dir / "jumpgate"), "agent", "run", "--state-dir", str(paths.agent)])
    show(cmd)
    return start_process(paths, "agent", cmd)


def instance_status(paths: Paths, url: str) -> str:
    result = run(["aws", "ssm", "describe-instance-information", "--endpoint-url", url, "--output", "json"],
                 env=aws_env(paths), check=False)
    if result.returncode != 0:
        return ""
    items = json.loads(result.stdout).get("InstanceInformationList", [])
    return items[0].get("PingStatus", "") if items else ""


# ---------------------------------------------------------------------------------------------------
# up / down / status


def healthy(paths: Paths) -> bool:
    state = load_state(paths)
    pids = state.get("pids", {})
    return (
        paths.env.exists()
        and sorted(existing_namespaces()) == sorted(NAMESPACES)
        and all(name in pids and alive(pids[name]) for name in ("gateway", "mariadb", "sqs-endpoint", "agent"))
    )


def up(bin_dir: Path | None = None) -> dict:
    require_root()
    paths = lab_dir()
    if healthy(paths):
        log(f"The lab is already up; its outputs are in {paths.env}")
        return read_env(paths)
    if existing_namespaces() or load_state(paths):
        log("Removing what a previous lab left behind")
        down(quiet=True)
    bin_dir = bin_dir or jumpgate_bin_dir()
    for tool in ("ip", "nft", "mariadbd", "mariadb-install-db", "mariadb", "openssl"):
        if not shutil.which(tool):
            raise LabError(f"{tool} is missing: install iproute2, nftables, mariadb-server, mariadb-client and openssl "
                           "(./scripts/demo does it)")
    try:
        log("==> The VPC: namespaces, veth pairs, two private subnets, private DNS names")
        build_network()
        password = secrets.token_urlsafe(12)
        log("==> The database (MariaDB standing in for RDS MySQL) in private subnet 2")
        start_database(paths, password)
        log("==> The SQS interface endpoint (moto's SQS behind TLS) in private subnet 1")
        queue_url = start_queue_endpoint(paths)
        log("==> The gateway, outside the VPC")
        url = start_gateway(paths, bin_dir)
        gateway_port = int(url.rsplit(":", 1)[1])
        log("==> Security groups and the VPC edge (nftables)")
        apply_firewall(gateway_port)
        log("==> The jump server: register the agent with an activation, then run it")
        instance = register_agent(paths, bin_dir, url)
        agent = start_agent(paths, bin_dir)
        wait_for("the agent's control channel (Online in DescribeInstanceInformation)",
                 lambda: instance_status(paths, url) == "Online", 30, paths.logs / "agent.log", agent)
        log("==> A user for the engineer: a policy that allows the seed's two destinations and nothing else")
        credentials = create_user(paths, bin_dir, url)
        values = {
            "JUMPGATE_ENDPOINT": url,
            "AWS_ENDPOINT_URL_SSM": url,
            "AWS_CA_BUNDLE": str(paths.gateway / "tls" / "ca.pem"),
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "AWS_PROFILE": "engineer",
            "JUMPGATE_ADMIN_CREDENTIALS": str(paths.gateway / "admin.credentials"),
            "AWS_DEFAULT_REGION": REGION,
            "JUMP_SERVER_INSTANCE_ID": instance,
            "RDS_ENDPOINT": DB_HOSTNAME,
            "DB_NAME": DB_NAME,
            "DB_USER": DB_USER,
            "DB_PASSWORD": password,
            "SQS_ENDPOINT": SQS_HOSTNAME,
            "SQS_QUEUE_URL": queue_url,
        }
        paths.env.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))
        os.chmod(paths.env, 0o600)
        log(f"==> The lab is up. Its outputs (source it: `set -a; . {paths.env}; set +a`):")
        log(paths.env.read_text().rstrip())
        return values
    except BaseException:
        log("Lab set-up failed; tearing down what was made")
        down(quiet=True)
        raise


def read_env(paths: Paths) -> dict:
    values = {}
    for line in paths.env.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = shlex.split(value)[0] if value else ""
    return values


def down(quiet: bool = False) -> None:
    require_root()
    paths = lab_dir()
    state = load_state(paths)
    # Our processes, by the PIDs we recorded...
    for name, pid in sorted(state.get("pids", {}).items(), key=lambda item: item[0] != "agent"):
        if not quiet:
            log(f"stopping {name} (pid {pid})")
        stop_pid(pid)
    # ...and anything else still inside the namespaces this lab created (started by us in them).
    for ns in existing_namespaces():
        for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
            stop_pid(int(pid), grace=2)
        run(["ip", "netns", "del", ns], check=False)  # takes its veths and nftables table with it
    run(["ip", "link", "del", HOST_LINK], check=False)
    run(["ip", "route", "del", VPC_CIDR, "via", UPLINK_ROUTER], check=False)
    for ns in NAMESPACES:
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
    shutil.rmtree(paths.base, ignore_errors=True)
    if not quiet:
        log("The lab is down: namespaces, veths, nftables tables, processes and .lab/ removed")


def leftovers() -> list[str]:
    """What `down` should have removed and did not (used by the tests)."""
    found = [f"namespace {ns}" for ns in existing_namespaces()]
    if run(["ip", "link", "show", HOST_LINK], check=False).returncode == 0:
        found.append(f"link {HOST_LINK}")
    found += [f"/etc/netns/{ns}" for ns in NAMESPACES if (Path("/etc/netns") / ns).exists()]
    if lab_dir().base.exists():
        found.append(str(lab_dir().base))
    return found


def status() -> int:
    paths = lab_dir()
    if healthy(paths):
        log(f"up; outputs in {paths.env}")
        return 0
    log("down" if not existing_namespaces() else f"partly up ({', '.join(existing_namespaces())}); run `scripts/lab.py down`")
    return 1


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces and nftables): run it with sudo")


# ---------------------------------------------------------------------------------------------------
# The walkthrough: the seed's steps, each command printed before it runs. Returns what it observed so
# that the tests can assert on it.


class Session:
    """A foreground port-forwarding command (aws ssm start-session, jumpgate forward) run the way a
    person runs it in a terminal: in its own process group, ended with Ctrl+C (SIGINT to the group)."""

    def __init__(self, cmd: list[str], env: dict, name: str, ready_marker: str, paths: Paths, display: list[str] | None = None,
                 ready_count: int = 1):
        show(display or cmd)
        self.output = paths.logs / f"{name}.out"
        self.handle = open(self.output, "wb")
        self.process = subprocess.Popen(cmd, stdout=self.handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            text = self.text()
            if text.count(ready_marker) >= ready_count:
                break
            if self.process.poll() is not None:
                raise LabError(f"`{shlex.join(display or cmd)}` exited {self.process.returncode}: {self.text().strip()[-400:]}")
            time.sleep(0.1)
        else:
            raise LabError(f"`{shlex.join(display or cmd)}` did not become ready within 30 s: {self.text().strip()[-400:]}")
        for line in self.text().strip().splitlines():
            print(f"    {line}", flush=True)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def interrupt(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise LabError(f"{self.output.stem} did not end within 20 s of Ctrl+C")
        finally:
            self.handle.close()


def mysql_round_trip(values: dict, port: int, marker: str) -> list[str]:
    sql = (f"CREATE TABLE IF NOT EXISTS greetings (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(100)) CHARACTER SET utf8mb4; "
           f"INSERT INTO greetings (body) VALUES ('{marker}'); SELECT body FROM greetings ORDER BY id;")
    cmd = ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", values["DB_USER"], "--batch", "--skip-column-names",
           "--default-character-set=utf8mb4", values["DB_NAME"], "-e", sql]
    show(cmd, env_prefix="MYSQL_PWD=$DB_PASSWORD ")
    result = run(cmd, env=dict(os.environ, MYSQL_PWD=values["DB_PASSWORD"]))
    rows = result.stdout.strip().splitlines()
    log(f"MySQL rows: {', '.join(rows)}")
    return rows


def sqs_round_trip(values: dict, port: int, body: str, env: dict) -> str:
    quiet = dict(env, PYTHONWARNINGS="ignore")  # the seed's --no-verify-ssl warning, said once here instead
    endpoint = f"https://localhost:{port}"
    send = ["aws", "sqs", "send-message", "--queue-url", values["SQS_QUEUE_URL"], "--message-body", body,
            "--endpoint-url", endpoint, "--no-verify-ssl", "--output", "json"]
    show(send)
    sent = json.loads(run(send, env=quiet).stdout)
    log(f"    MessageId: {sent['MessageId']}   (certificate check disabled, as in the seed: the certificate names "
        f"{SQS_HOSTNAME}, not localhost)")
    receive = ["aws", "sqs", "receive-message", "--queue-url", values["SQS_QUEUE_URL"], "--wait-time-seconds", "2",
               "--endpoint-url", endpoint, "--no-verify-ssl", "--output", "json"]
    show(receive)
    received = json.loads(run(receive, env=quiet).stdout or "{}")
    messages = received.get("Messages", [])
    if not messages:
        raise LabError("receive-message returned no message: the one just sent did not arrive")
    got = messages[0]["Body"]
    log(f"SQS message received: {got}")
    delete = ["aws", "sqs", "delete-message", "--queue-url", values["SQS_QUEUE_URL"], "--receipt-handle",
              messages[0]["ReceiptHandle"], "--endpoint-url", endpoint, "--no-verify-ssl"]
    run(delete, env=quiet)
    return got


def proofs(values: dict) -> dict:
    """What makes the scenario real, each with a positive control. Returns the observations."""
    gateway_port = int(values["JUMPGATE_ENDPOINT"].rsplit(":", 1)[1])
    observed = {}
    log("==> Proofs that the database and the queue are private")
    for label, name, address, port in (("database", DB_HOSTNAME, DB_IP, 3306), ("queue endpoint", SQS_HOSTNAME, SQS_IP, 443)):
        try:
            resolved_here = sorted({info[4][0] for info in socket.getaddrinfo(name, port, socket.AF_INET, socket.SOCK_STREAM)})
        except OSError:
            resolved_here = []
        inside = run(in_ns(NS_JUMP, ["getent", "ahostsv4", name]), check=False).stdout.split()
        resolved_inside = inside[0] if inside else ""
        host_reaches = tcp_connects(address, port, timeout=2)
        jump_reaches = ns_tcp_connects(NS_JUMP, address, port)
        log(f"{label}: {name} resolves on this host to {resolved_here or 'nothing'}; on the jump server to {resolved_inside or 'nothing'}")
        log(f"{label}: {address}:{port} from this host: {'CONNECTED' if host_reaches else 'no connection (dropped)'}; "
            f"from the jump server: {'connected' if jump_reaches else 'NO CONNECTION'}")
        observed[label] = {"resolved_on_host": resolved_here, "resolved_inside": resolved_inside,
                           "host_reaches": host_reaches, "jump_reaches": jump_reaches}
    listening = run(in_ns(NS_JUMP, ["ss", "-Htln"]), check=False).stdout.strip().splitlines()
    db_listening = run(in_ns(NS_DB, ["ss", "-Htln"]), check=False).stdout.strip().splitlines()
    log(f"jump server listening TCP sockets: {len(listening)} (the database host, for comparison: {len(db_listening)})")
    connections = run(in_ns(NS_JUMP, ["ss", "-Htn", "state", "established"]), check=False).stdout.strip().splitlines()
    peers = sorted({line.split()[-1] for line in connections})
    log(f"jump server's established connections go to: {', '.join(peers) or 'nothing'} "
        f"(the gateway is {UPLINK_HOST}:{gateway_port})")
    observed["jump_listening"] = listening
    observed["db_listening"] = db_listening
    observed["jump_peers"] = peers
    observed["gateway_peer"] = f"{UPLINK_HOST}:{gateway_port}"
    # The VPC reaches nothing outside but the gateway's port: the host's SSH-like ports are closed to it.
    observed["jump_reaches_gateway"] = ns_tcp_connects(NS_JUMP, UPLINK_HOST, gateway_port)
    observed["jump_reaches_outside_other_port"] = ns_tcp_connects(NS_JUMP, UPLINK_HOST, observed_free_port())
    log(f"from the jump server: the gateway's port {'connects' if observed['jump_reaches_gateway'] else 'DOES NOT CONNECT'}, "
        f"any other port outside {'CONNECTS' if observed['jump_reaches_outside_other_port'] else 'is dropped'}")
    return observed


def observed_free_port() -> int:
    """A port with a listener on the uplink address, so that only the firewall can stop the connection."""
    global _outside_listener
    if _outside_listener is None:
        _outside_listener = socket.socket()
        _outside_listener.bind((UPLINK_HOST, 0))
        _outside_listener.listen(4)
    return _outside_listener.getsockname()[1]


_outside_listener: socket.socket | None = None


def close_outside_listener() -> None:
    global _outside_listener
    if _outside_listener is not None:
        _outside_listener.close()
        _outside_listener = None


def walkthrough(bin_dir: Path | None = None, forward: bool = True) -> dict:
    """The seed scenario, step by step. Needs a lab that is up."""
    paths = lab_dir()
    if not healthy(paths):
        raise LabError("the lab is not up: run `scripts/lab.py up` first")
    bin_dir = bin_dir or jumpgate_bin_dir()
    values = read_env(paths)
    env = user_env(paths)  # everything below runs as the engineer, not the administrator
    env["PATH"] = f"{bin_dir}:{env['PATH']}"  # Jumpgate's session-manager-plugin, as `aws` expects it
    url, instance = values["JUMPGATE_ENDPOINT"], values["JUMP_SERVER_INSTANCE_ID"]
    result: dict = {"instance": instance}

    log("==> The jump server as the gateway sees it")
    info = ["aws", "ssm", "describe-instance-information", "--endpoint-url", url, "--output", "table",
            "--query", "InstanceInformationList[].[InstanceId,Name,PingStatus,IPAddress,AgentVersion]"]
    show(info)
    print(run(info, env=env).stdout.rstrip(), flush=True)

    log("==> Forwarding local port 1213 to the private database (the seed's first command)")
    rds = Session(["aws", "ssm", "start-session", "--target", instance, "--document-name", "AWS-StartPortForwardingSessionToRemoteHost",
                   "--parameters", f'host="{DB_HOSTNAME}",portNumber="3306",localPortNumber="1213"', "--endpoint-url", url],
                  env, "session-rds", "Waiting for connections...", paths)
    sqs = None
    try:
        log("==> The mysql client talks to the private database through 127.0.0.1:1213")
        result["mysql_rows"] = mysql_round_trip(values, 1213, "Olá do laptop")
        log("==> Forwarding local port 1313 to the SQS endpoint (the seed's second command)")
        sqs = Session(["aws", "ssm", "start-session", "--target", instance, "--document-name", "AWS-StartPortForwardingSessionToRemoteHost",
                       "--parameters", f'host="{SQS_HOSTNAME}",portNumber="443",localPortNumber="1313"', "--endpoint-url", url],
                      env, "session-sqs", "Waiting for connections...", paths)
        log("==> Sending \"Olá mundo!\" to the queue through localhost:1313, then receiving it")
        result["sqs_body"] = sqs_round_trip(values, 1313, "Olá mundo!", env)
        log("==> Another port on the database host is outside the engineer's policy: refused at once")
        refused = ["aws", "ssm", "start-session", "--target", instance, "--document-name", "AWS-StartPortForwardingSessionToRemoteHost",
                   "--parameters", f'host="{DB_HOSTNAME}",portNumber="22",localPortNumber="1214"', "--endpoint-url", url]
        show(refused)
        attempt = run(refused, env=env, check=False, timeout=30)
        print(attempt.stderr.strip(), flush=True)
        result["refused"] = {"exit": attempt.returncode, "stderr": attempt.stderr}
        log("==> Both sessions, as the gateway lists them")
        listing = [str(bin_dir / "jumpgate"), "sessions", "list", "--endpoint-url", url]
        show(["jumpgate", *listing[1:]])
        table = run(listing, env=env).stdout
        print(table.rstrip(), flush=True)
        result["sessions_listed"] = table
        result["proofs"] = proofs(values)
    finally:
        log("==> Ctrl+C in both terminals ends the sessions")
        codes = [s.interrupt() for s in (rds, sqs) if s]
    result["exit_codes"] = codes
    result["session_ids"] = [line.split()[-1].rstrip(".") for s in (rds, sqs) if s for line in s.text().splitlines()
                             if line.startswith("Starting session with SessionId:")]
    history = ["aws", "ssm", "describe-sessions", "--state", "History", "--endpoint-url", url, "--output", "json"]
    show(history)
    ended = json.loads(run(history, env=env).stdout).get("Sessions", [])
    result["history"] = {s["SessionId"]: s["Status"] for s in ended}
    for sid in result["session_ids"]:
        log(f"    {sid}: {result['history'].get(sid, 'not in history')}")

    if forward:
        log("==> The same with one command: `jumpgate forward` carries both ports")
        cmd = [str(bin_dir / "jumpgate"), "forward", instance, "-L", f"1213:{DB_HOSTNAME}:3306", "-L", f"1313:{SQS_HOSTNAME}:443",
               "--endpoint-url", url, "--format", "json"]
        both = Session(cmd, env, "forward", '"event":"ready"', paths, display=["jumpgate", *cmd[1:]], ready_count=2)
        try:
            result["forward_ready"] = [json.loads(line) for line in both.text().splitlines() if '"event":"ready"' in line]
            result["forward_mysql_rows"] = mysql_round_trip(values, 1213, "Olá de novo")
            result["forward_sqs_body"] = sqs_round_trip(values, 1313, "Olá de novo, mundo!", env)
        finally:
            result["forward_exit"] = both.interrupt()
    close_outside_listener()
    if result["session_ids"]:
        # The demo ends with the record of what the engineer did.
        result["audit"] = audit_records(paths, bin_dir, url, result["session_ids"][0])
    return result


class MysqlShell:
    """One long-lived MySQL connection (the mariadb client reading statements from a pipe, unbuffered),
    as a person keeps a database console open while the network underneath misbehaves."""

    def __init__(self, values: dict, port: int, paths: Paths):
        cmd = ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", values["DB_USER"], "--batch",
               "--skip-column-names", "--unbuffered", values["DB_NAME"]]
        show(cmd, env_prefix="MYSQL_PWD=$DB_PASSWORD ")
        self.errors = open(paths.logs / "mysql-shell.err", "wb")
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors, text=True,
                                        env=dict(os.environ, MYSQL_PWD=values["DB_PASSWORD"]))

    def query(self, sql: str, timeout: float = 60) -> str:
        """Runs `sql` and returns the one line its last statement prints."""
        self.send(sql)
        return self.answer(sql, timeout)

    def send(self, sql: str) -> None:
        print(f"    mysql> {sql}", flush=True)
        self.process.stdin.write(sql + "\n")
        self.process.stdin.flush()

    def answer(self, sql: str, timeout: float = 60) -> str:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise LabError(f"no answer to `{sql}` within {timeout:.0f} s")
        line = self.process.stdout.readline().rstrip("\n")
        if not line:
            raise LabError(f"the mysql connection ended while running `{sql}`")
        print(f"    {line}", flush=True)
        return line

    def close(self) -> int:
        self.process.stdin.close()
        code = self.process.wait(timeout=20)
        self.errors.close()
        return code


def restart_gateway(paths: Paths, bin_dir: Path, url: str) -> float:
    """Restarts the gateway the way systemd does: SIGTERM, wait for it to exit, start it again on the
    same address and data directory. Returns how long it took to exit; raises if SIGTERM did not stop it
    within 10 s (systemd would then SIGKILL it, which this restart is not meant to test)."""
    pid = load_state(paths)["pids"]["gateway"]
    show(["kill", "-TERM", str(pid)])
    started = time.time()
    os.kill(pid, signal.SIGTERM)
    while alive(pid) and time.time() - started < 10:
        time.sleep(0.05)
    if alive(pid):
        stop_pid(pid)
        raise LabError("the gateway did not exit within 10 s of SIGTERM")
    stopped_after = time.time() - started
    ready = paths.logs / "gateway.ready"
    ready.unlink(missing_ok=True)
    listen = url.removeprefix("https://")
    cmd = [str(bin_dir / "jumpgate"), "server", "--data-dir", str(paths.gateway), "--listen", listen, "--format", "json"]
    show(cmd)
    process = start_process(paths, "gateway", cmd, stdout=ready)
    wait_for("the gateway", lambda: ready.exists() and ready.read_text().strip() != "", 30, paths.logs / "gateway.log", process)
    return stopped_after


def mysql_continuity(bin_dir: Path | None = None, outage: float = 10) -> dict:
    """One MySQL connection through a tunnel, with a transaction open, across a gateway restart and a cut
    of the jump server's link (`ip link set down`, then up, on its port of the VPC's switch). Returns
    CONNECTION_ID() before and after each, and whether the transaction's row is there after COMMIT."""
    paths = lab_dir()
    if not healthy(paths):
        raise LabError("the lab is not up: run `scripts/lab.py up` first")
    bin_dir = bin_dir or jumpgate_bin_dir()
    values = read_env(paths)
    env = user_env(paths)
    url, instance = values["JUMPGATE_ENDPOINT"], values["JUMP_SERVER_INSTANCE_ID"]
    marker = f"continuity {secrets.token_hex(4)}"
    result: dict = {"marker": marker}
    log("==> One database connection kept open through a gateway restart and a 10 s cut of the jump server's link")
    cmd = [str(bin_dir / "jumpgate"), "forward", instance, "-L", f"1215:{DB_HOSTNAME}:3306", "--endpoint-url", url,
           "--format", "json"]
    tunnel = Session(cmd, env, "forward-continuity", '"event":"ready"', paths, display=["jumpgate", *cmd[1:]])
    shell = None
    try:
        shell = MysqlShell(values, 1215, paths)
        result["id_before"] = shell.query("SELECT CONNECTION_ID();")
        shell.query("CREATE TABLE IF NOT EXISTS greetings (id INT AUTO_INCREMENT PRIMARY KEY, body VARCHAR(100)) "
                    f"CHARACTER SET utf8mb4; START TRANSACTION; INSERT INTO greetings (body) VALUES ('{marker}'); SELECT 'open';")
        log("==> The gateway restarts (SIGTERM, then start) while the transaction is open")
        result["gateway_stop_seconds"] = restart_gateway(paths, bin_dir, url)
        result["id_after_restart"] = shell.query("SELECT CONNECTION_ID();")
        log(f"==> The jump server's link goes down for {outage:.0f} s, then comes back")
        link = ["ip", "-n", NS_ROUTER, "link", "set", "r-jump"]
        show(link + ["down"])
        run(link + ["down"])
        try:
            # A query sent while the link is down: its bytes wait in the tunnel until the link is back.
            time.sleep(2)
            shell.send("SELECT CONNECTION_ID();")
            time.sleep(outage - 2)
        finally:
            show(link + ["up"])
            run(link + ["up"])
        result["id_after_cut"] = shell.answer("SELECT CONNECTION_ID();", timeout=90)
        result["committed"] = shell.query(f"COMMIT; SELECT COUNT(*) FROM greetings WHERE body = '{marker}';")
        result["shell_exit"] = shell.close()
        shell = None
        # Seen from another connection: the row is really committed.
        result["seen_elsewhere"] = [row for row in mysql_round_trip(values, 1215, f"{marker} check") if row == marker]
    finally:
        if shell:
            shell.process.kill()
        result["forward_exit"] = tunnel.interrupt()
    return result


def ssh_over_session(bin_dir: Path | None = None, size: int = 64 << 20, seed: int = 20261204) -> dict:
    """AWS-StartSSHSession in the lab: an sshd on the jump server's loopback only (no port open to the VPC
    or the outside), the agent's allow-list extended to 127.0.0.1:22 for the run, then `ssh` with the AWS
    CLI as its ProxyCommand runs a command and `scp` copies `size` seeded bytes there and back. As the
    administrator (the engineer's policy names the database and the queue only). Returns the observations."""
    paths = lab_dir()
    if not healthy(paths):
        raise LabError("the lab is not up: run `scripts/lab.py up` first")
    bin_dir = bin_dir or jumpgate_bin_dir()
    values = read_env(paths)
    url, instance = values["JUMPGATE_ENDPOINT"], values["JUMP_SERVER_INSTANCE_ID"]
    env = aws_env(paths)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    work = paths.base / "ssh"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for key in ("host", "client"):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / key)])
    (work / "sshd_config").write_text(
        "Port 22\nListenAddress 127.0.0.1\n"
        f"HostKey {work}/host\nPidFile none\nAuthorizedKeysFile {work}/client.pub\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "AllowUsers root\nSubsystem sftp internal-sftp\nLogLevel ERROR\n")
    Path("/run/sshd").mkdir(exist_ok=True)
    jumpgate = str(bin_dir / "jumpgate")
    lists = ["--allow", f"{VPC_CIDR}:3306", "--allow", f"{VPC_CIDR}:443"]
    result: dict = {"seed": seed}
    log("==> An sshd on the jump server's loopback (127.0.0.1:22), and 127.0.0.1:22 on the agent's allow-list")
    sshd_cmd = in_ns(NS_JUMP, ["/usr/sbin/sshd", "-D", "-e", "-f", str(work / "sshd_config")])
    show(sshd_cmd)
    sshd_log = open(paths.logs / "sshd.log", "ab")
    sshd = subprocess.Popen(sshd_cmd, stdout=subprocess.DEVNULL, stderr=sshd_log, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for("sshd", lambda: ns_tcp_connects(NS_JUMP, "127.0.0.1", 22), 15, paths.logs / "sshd.log", sshd)
        allow = [jumpgate, "agent", "allow-list", "--state-dir", str(paths.agent), *lists, "--allow", "127.0.0.1:22"]
        show(["jumpgate", *allow[1:]])
        run(allow)
        result["listening"] = run(in_ns(NS_JUMP, ["ss", "-Htln"]), check=False).stdout.strip().splitlines()
        result["reachable_from_vpc"] = ns_tcp_connects(NS_SQS, JUMP_IP, 22)
        result["reachable_from_outside"] = tcp_connects(JUMP_IP, 22)
        result["reachable_on_loopback"] = ns_tcp_connects(NS_JUMP, "127.0.0.1", 22)  # positive control
        proxy = (f"aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters portNumber=%p "
                 f"--endpoint-url {url}")
        options = ["-F", "/dev/null", "-i", str(work / "client"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                   "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                   "-o", f"ProxyCommand={proxy}"]
        log("==> ssh with the AWS CLI as ProxyCommand runs a command on the jump server")
        command = ["ssh", *options, f"root@{instance}", "echo ssh-$((6*7)) on $(cat /proc/sys/kernel/hostname)"]
        show(command)
        answer = run(command, env=env, check=False, timeout=60)
        print(answer.stdout.strip(), answer.stderr.strip()[-400:], flush=True)
        result["ssh_exit"] = answer.returncode
        result["ssh_output"] = answer.stdout.strip()
        log(f"==> scp copies {size >> 20} MiB of seeded bytes (seed {seed}) to the jump server and back")
        payload = random.Random(seed).randbytes(size)
        (work / "payload").write_bytes(payload)
        there = ["scp", *options, str(work / "payload"), f"root@{instance}:{work}/copied"]
        back = ["scp", *options, f"root@{instance}:{work}/copied", str(work / "back")]
        started = time.time()
        codes = []
        for step in (there, back):
            show(step)
            codes.append(run(step, env=env, check=False, timeout=300).returncode)
        result["scp_seconds"] = round(time.time() - started, 2)
        result["scp_exits"] = codes
        digest = hashlib.sha256(payload).hexdigest()
        result["copied_intact"] = (work / "copied").exists() and hashlib.sha256((work / "copied").read_bytes()).hexdigest() == digest
        result["back_intact"] = (work / "back").exists() and hashlib.sha256((work / "back").read_bytes()).hexdigest() == digest
        log(f"scp: exits {codes}, {result['scp_seconds']} s, byte-exact there {result['copied_intact']} and back {result['back_intact']}")
    finally:
        stop_pid(sshd.pid)
        sshd.wait(timeout=10)
        sshd_log.close()
        run([jumpgate, "agent", "allow-list", "--state-dir", str(paths.agent), *lists], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return result


def audit_records(paths: Paths, bin_dir: Path, url: str, session_id: str) -> dict:
    """The database session's audit records (its start, each connection the agent reported, its end) and
    the engineer's refused attempt, as the administrator reads them."""
    env = aws_env(paths)
    jumpgate = str(bin_dir / "jumpgate")
    by_session = [jumpgate, "audit", "list", "--session", session_id, "--endpoint-url", url]
    records: list = []

    def complete() -> bool:
        nonlocal records
        records = json.loads(run(by_session + ["--format", "json"], env=env).stdout)
        names = [r["eventName"] for r in records]
        return "SessionEnded" in names and names.count("ConnectionClosed") >= names.count("ConnectionOpened") > 0

    # The agent reports each connection as it closes: wait (bounded) until the last one is in.
    wait_for("the session's connection records", complete, 15)
    log(f"==> The audit trail of {session_id}, connections included (read by the administrator)")
    show(["jumpgate", *by_session[1:-2]])
    print(run(by_session, env=env).stdout.rstrip(), flush=True)
    starts = json.loads(run([jumpgate, "audit", "list", "--user", "engineer", "--event", "StartSession", "--format", "json",
                             "--endpoint-url", url], env=env).stdout)
    show(["jumpgate", "audit", "verify"])
    verify = run([jumpgate, "audit", "verify", "--endpoint-url", url], env=env, check=False)
    print(verify.stdout.rstrip(), flush=True)
    return {"session": records, "engineer_starts": starts, "verify_exit": verify.returncode, "verify": verify.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "walkthrough"])
    parser.add_argument("--bin", type=Path, help="the directory holding the jumpgate binaries (default: the release build)")
    args = parser.parse_args()
    try:
        if args.command == "up":
            up(args.bin)
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        else:
            walkthrough(args.bin)
    except LabError as error:
        print(f"\nLAB FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
