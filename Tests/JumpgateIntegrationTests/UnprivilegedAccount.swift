import Foundation

/// An account without privileges (`nobody`, uid and gid 65534) that the lab's processes can run as, through
/// util-linux's `setpriv`: the packaged systemd units run the gateway and the agent with `DynamicUser`, and
/// people run `jumpgate forward` from their own accounts. Anything that needs root fails there and nowhere
/// else, since the tests run as root: until 2026-12-06 every socket was given `SO_DEBUG` (NIO's
/// `.socketOption(.tcp_nodelay)` is TCP_NODELAY's number, 1, at the socket level), which only root may
/// set, so an unprivileged gateway refused every connection and an unprivileged agent reached nothing.
struct UnprivilegedAccount {
    /// A uid and gid without privileges.
    struct User: Sendable, Equatable {
        var uid: uid_t
        var gid: gid_t
    }

    /// `nobody`: no login shell, like the dynamic user systemd gives the packaged units.
    static let nobody = User(uid: 65534, gid: 65534)

    /// Runs `body` with an account without privileges but with a login shell, made for it (`useradd`, as a
    /// root agent makes `jumpgate-user`) and removed afterwards: an agent running as it serves shells as
    /// itself.
    static func withShellAccount(_ body: (String, User) async throws -> Void) async throws {
        let name = "jumpgate-test-shell"
        // bash where there is one, as for the agent's own jumpgate-user (the shell tests expect its echo).
        let shell = FileManager.default.isExecutableFile(atPath: "/bin/bash") ? "/bin/bash" : "/bin/sh"
        if getpwnam(name) == nil {
            try ShellSessionTests.runTool(
                "/usr/sbin/useradd",
                ["--create-home", "--user-group", "--shell", shell, "--comment", "Jumpgate tests", name]
            )
        }
        // --force: a job the shells left in the background (the shell tests leave a `sleep 20`) may still run.
        defer { try? ShellSessionTests.runTool("/usr/sbin/userdel", ["--force", "--remove", name]) }
        guard let entry = getpwnam(name) else { throw HarnessError("useradd \(name) made no account") }
        try await body(name, User(uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid))
    }

    let user: User

    /// Only root can switch to another account; a suite run without root runs every test unprivileged.
    static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: Self.setpriv) }
    static let setpriv = "/usr/bin/setpriv"

    /// A copy of the build's `jumpgate` inside `directory`, so that the account can reach it wherever the
    /// build lives (a home directory closed to others, for instance).
    let binary: String

    /// Hands `directory` (created by the caller) to `user` and copies the binary into it.
    init(owning directory: String, as user: User) throws {
        self.user = user
        self.binary = directory + "/jumpgate"
        try FileManager.default.copyItem(
            at: ChildProcess.productsDirectory.appendingPathComponent("jumpgate"),
            to: URL(fileURLWithPath: self.binary)
        )
        guard chown(directory, user.uid, user.gid) == 0, chmod(self.binary, 0o755) == 0 else {
            throw HarnessError("could not hand \(directory) to uid \(user.uid): errno \(errno)")
        }
    }

    /// `jumpgate arguments` as the account: no supplementary groups, and no capabilities (a change of
    /// uid away from 0 clears them).
    func process(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(
            name,
            ["--reuid=\(self.user.uid)", "--regid=\(self.user.gid)", "--clear-groups", "--", self.binary] + arguments,
            executable: Self.setpriv,
            environment: environment
        )
    }

    /// The real uid of `process` and its effective capabilities (from /proc), to check that it did not run
    /// as root nor keep a privilege.
    static func identity(of process: ChildProcess) -> (uid: uid_t, capabilities: UInt64)? {
        let pid = process.process.processIdentifier
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func field(_ name: String) -> Substring? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }?
                .split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first
        }
        guard let uid = field("Uid").flatMap({ uid_t($0) }),
            let capabilities = field("CapEff").flatMap({ UInt64($0, radix: 16) })
        else { return nil }
        return (uid, capabilities)
    }
}
