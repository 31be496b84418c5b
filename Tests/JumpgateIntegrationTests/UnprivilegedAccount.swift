import Foundation

/// An account without privileges (`nobody`, uid and gid 65534) that the lab's processes can run as, through
/// util-linux's `setpriv`: the packaged systemd units run the gateway and the agent with `DynamicUser`, and
/// people run `jumpgate forward` from their own accounts. Anything that needs root fails there and nowhere
/// else, since the tests run as root: until 2026-12-06 every socket was given `SO_DEBUG` (NIO's
/// `.socketOption(.tcp_nodelay)` is TCP_NODELAY's number, 1, at the socket level), which only root may
/// set, so an unprivileged gateway refused every connection and an unprivileged agent reached nothing.
struct UnprivilegedAccount {
    static let uid: uid_t = 65534
    static let gid: gid_t = 65534

    /// Only root can switch to another account; a suite run without root runs every test unprivileged.
    static var available: Bool { getuid() == 0 && FileManager.default.isExecutableFile(atPath: Self.setpriv) }
    static let setpriv = "/usr/bin/setpriv"

    /// A copy of the build's `jumpgate` inside `directory`, so that the account can reach it wherever the
    /// build lives (a home directory closed to others, for instance).
    let binary: String

    /// Hands `directory` (created by the caller) to the account and copies the binary into it.
    init(owning directory: String) throws {
        self.binary = directory + "/jumpgate"
        try FileManager.default.copyItem(
            at: ChildProcess.productsDirectory.appendingPathComponent("jumpgate"),
            to: URL(fileURLWithPath: self.binary)
        )
        guard chown(directory, Self.uid, Self.gid) == 0, chmod(self.binary, 0o755) == 0 else {
            throw HarnessError("could not hand \(directory) to uid \(Self.uid): errno \(errno)")
        }
    }

    /// `jumpgate arguments` as the account: no supplementary groups, and no capabilities (a change of
    /// uid away from 0 clears them).
    func process(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(
            name,
            ["--reuid=\(Self.uid)", "--regid=\(Self.gid)", "--clear-groups", "--", self.binary] + arguments,
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
