# Sourced by scripts/demo and scripts/test: installs what they need on a fresh Debian machine with the
# Swift toolchain, saying what it installs. Debian packages through apt (as root, or with sudo), Python
# tools from PyPI into the project's .venv (the system Python is left alone).

say() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_prerequisites() {
    local apt_packages=()
    command -v python3 >/dev/null 2>&1 || apt_packages+=(python3)
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_packages+=(python3-venv)
    # The lab: namespaces and veths (iproute2), security groups (nftables), the database (MariaDB
    # server and client) and the queue endpoint's certificate (openssl).
    command -v ip >/dev/null 2>&1 || apt_packages+=(iproute2)
    command -v nft >/dev/null 2>&1 || apt_packages+=(nftables)
    command -v mariadbd >/dev/null 2>&1 || apt_packages+=(mariadb-server)
    command -v mariadb >/dev/null 2>&1 || apt_packages+=(mariadb-client)
    command -v openssl >/dev/null 2>&1 || apt_packages+=(openssl)
    # The README's walkthrough and the client tests fetch through the forwarded ports with curl.
    command -v curl >/dev/null 2>&1 || apt_packages+=(curl)
    command -v tmux >/dev/null 2>&1 || apt_packages+=(tmux)  # the shell-session tests drive a terminal
    # SSH over a session (AWS-StartSSHSession): the tests start their own sshd on a loopback port.
    command -v ssh >/dev/null 2>&1 || apt_packages+=(openssh-client)
    [ -x /usr/sbin/sshd ] || apt_packages+=(openssh-server)
    command -v rsync >/dev/null 2>&1 || apt_packages+=(rsync)  # rsync -e ssh through a session
    if [ ${#apt_packages[@]} -gt 0 ]; then
        say "Installing Debian packages: ${apt_packages[*]}"
        as_root apt-get update -qq
        # Keep the packages' scripts from starting a MariaDB server in this (the root) namespace: the
        # lab runs its own inside the private network. policy-rc.d is removed again right after.
        local policy=/usr/sbin/policy-rc.d own_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod 755 "$policy" && own_policy=1
        fi
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
        if [ "$own_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
    fi
    if [ ! -x .venv/bin/python3 ]; then
        say "Creating a Python virtual environment in .venv"
        python3 -m venv .venv
    fi
    # awscli 1.46 is the first to warn about session-manager-plugin versions below 1.2.764.0 (the
    # README test checks Jumpgate's plugin passes); it carries its own botocore, the tests' signer is
    # the botocore package.
    if ! .venv/bin/python3 -c 'import awscli, botocore, moto.server, flask; assert awscli.__version__ == "1.46.3"' >/dev/null 2>&1; then
        say "Installing Python packages from PyPI into .venv: awscli 1.46.3 (the AWS CLI), botocore (the tests' SigV4 reference), moto[server] (the lab's SQS)"
        .venv/bin/python3 -m pip install --quiet --disable-pip-version-check 'awscli==1.46.3' 'botocore==1.43.11' 'moto[server]==5.2.5'
    fi
    export PATH="$PWD/.venv/bin:$PATH"
}
