import Foundation
import JumpgateAgent
import JumpgateClient
import JumpgateWire
import NIOCore
import NIOPosix
import Testing

/// SSH over a session (AWS-StartSSHSession): ssh's ProxyCommand runs `jumpgate start-session` (or the AWS
/// CLI with Jumpgate's plugin), whose standard input and output carry the SSH connection to an sshd the
/// test starts on a loopback port of its own (the agent's allow-list names it).
@Suite("SSH over a session: ssh and scp with a ProxyCommand", .serialized)
struct SSHSessionTests {
    static let sshd = "/usr/sbin/sshd"

    /// A free port of 127.0.0.1 for sshd (which cannot bind port 0 and say which it got), held by a bound
    /// socket until `release` runs just before sshd starts: released at once, the lab's own binds of port 0
    /// (the gateway's, the echo target's) could take it meanwhile. The socket is close-on-exec, unlike
    /// NIO's: the lab's processes, started while it is held, must not inherit it (they would keep the port).
    static func reservePort() throws -> (port: Int, release: () -> Void) {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(socket >= 0, "socket: errno \(errno)")
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0
            }
        }
        guard bound else {
            close(socket)
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        var open = true
        return (
            Int(UInt16(bigEndian: address.sin_port)),
            {
                if open { close(socket) }
                open = false
            }
        )
    }

    /// sshd's configuration: the current user only, by the test's key, on 127.0.0.1:`port`.
    static func sshdConfiguration(directory: String, port: Int, user: String) -> String {
        """
        Port \(port)
        ListenAddress 127.0.0.1
        HostKey \(directory)/host
        PidFile none
        AuthorizedKeysFile \(directory)/client.pub
        StrictModes no
        UsePAM no
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        PermitRootLogin prohibit-password
        AllowUsers \(user)
        Subsystem sftp internal-sftp
        LogLevel ERROR

        """
    }

    /// `count` bytes from SplitMix64 seeded with `seed`.
    static func seededBytes(_ count: Int, seed: UInt64) -> Data {
        var state = seed
        var words: [UInt64] = []
        words.reserveCapacity(count / 8 + 1)
        for _ in 0..<(count / 8 + 1) {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            words.append(z ^ (z >> 31))
        }
        return words.withUnsafeBytes { Data($0.prefix(count)) }
    }

    /// ssh's options: the test's client key, no known-hosts file, no prompts, and `proxy` as ProxyCommand.
    static func options(_ directory: String, proxy: String) -> String {
        "-F /dev/null -i \(directory)/client -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no "
            + "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o 'ProxyCommand=\(proxy)'"
    }

    @Test(
        "ssh runs a command and scp copies 64 MiB both ways byte-exact through jumpgate start-session, and ssh through the AWS CLI's plugin"
    )
    func sshAndSCP() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.sshd) else {
            print("SSHSessionTests skipped: no \(Self.sshd) (Debian's openssh-server; ./scripts/test installs it)")
            return
        }
        let directory = NSTemporaryDirectory() + "jumpgate-ssh-" + MessageID.random().description
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let user = try #require(ShellAccounts.current()?.name)
        let (port, releasePort) = try Self.reservePort()
        defer { releasePort() }
        try Self.sshdConfiguration(directory: directory, port: port, user: user)
            .write(toFile: "\(directory)/sshd_config", atomically: true, encoding: .utf8)
        // sshd running as root needs its privilege separation directory.
        if geteuid() == 0 {
            try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        }
        let seed: UInt64 = 0x5353_4831
        print("SSHSessionTests: payload seed \(seed)")
        let payload = Self.seededBytes(64 << 20, seed: seed)
        try payload.write(to: URL(fileURLWithPath: "\(directory)/payload"))

        try await EndToEndTests.withLab(allow: ["127.0.0.1:\(port)", "[::1]:\(port)"]) { lab, _ in
            // Everything runs in a terminal's shell: sshd (stopped by its pid at the end), ssh and scp.
            let terminal = try ShellSessionTests.terminal(lab)
            releasePort()
            try terminal.type(
                "cd \(directory) && ssh-keygen -q -t ed25519 -N '' -f host && ssh-keygen -q -t ed25519 -N '' -f client "
                    + "&& { \(Self.sshd) -D -e -f \(directory)/sshd_config 2> sshd.log & } && echo SSHD=$!"
            )
            let sshd = try terminal.waitForLine { $0.hasPrefix("SSHD=") }
            defer { if let pid = pid_t(sshd.dropFirst(5)) { kill(pid, SIGTERM) } }
            let jumpgate =
                "jumpgate start-session --target %h --document-name AWS-StartSSHSession "
                + "--parameters portNumber=%p --endpoint-url \(lab.url) --ca-file \(lab.caFile)"
            let ssh = Self.options(directory, proxy: jumpgate)
            let destination = "\(user)@\(lab.instanceID)"
            // Until sshd listens (bounded: 40 tries).
            try terminal.type(
                "ok=1; for i in $(seq 40); do ssh \(ssh) -p \(port) \(destination) 'echo ssh-$((6*7))' && { ok=0; break; }; sleep 0.25; done; echo SSH=$ok"
            )
            try terminal.waitForLine(timeout: 60) { $0 == "ssh-42" }
            try terminal.waitForLine { $0 == "SSH=0" }

            try terminal.type(
                "scp \(ssh) -P \(port) payload \(destination):\(directory)/copied && "
                    + "scp \(ssh) -P \(port) \(destination):\(directory)/copied back; echo SCP=$?"
            )
            try terminal.waitForLine(timeout: 120) { $0.hasPrefix("SCP=") }
            #expect(try terminal.count { $0 == "SCP=0" } == 1)
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/copied")) == payload)
            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/back")) == payload)
            // rsync with ssh as its transport, the same way.
            if FileManager.default.isExecutableFile(atPath: "/usr/bin/rsync") {
                try terminal.type(
                    "rsync -e \"ssh \(ssh) -p \(port)\" payload \(destination):\(directory)/rsynced; echo RSYNC=$?"
                )
                try terminal.waitForLine(timeout: 120) { $0.hasPrefix("RSYNC=") }
                #expect(try terminal.count { $0 == "RSYNC=0" } == 1)
                #expect(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/rsynced")) == payload)
            } else {
                print("SSHSessionTests: rsync part skipped: no /usr/bin/rsync (./scripts/test installs it)")
            }

            // The AWS CLI with Jumpgate's plugin as the ProxyCommand.
            let aws =
                "aws ssm start-session --target %h --document-name AWS-StartSSHSession "
                + "--parameters portNumber=%p --endpoint-url \(lab.url)"
            try terminal.type(
                "ssh \(Self.options(directory, proxy: aws)) -p \(port) \(destination) 'echo cli-$((6*7))'; echo CLI=$?"
            )
            try terminal.waitForLine(timeout: 60) { $0 == "cli-42" }
            try terminal.waitForLine { $0 == "CLI=0" }

            // Each session ended with its ssh: on standard input's end, or on ssh's SIGHUP (bounded: 10 s).
            var active: [JSONValue] = []
            for _ in 0..<100 {
                active = try await lab.ssm.call("DescribeSessions", ["State": "Active"])["Sessions"]?.arrayValue ?? []
                if active.isEmpty { break }
                try await Task.sleep(nanoseconds: 100_000_000)
            }
            #expect(active.isEmpty, "sessions still active: \(active)")
        }
    }
}
