import FoundationEssentials
import Glibc
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers

/// The account a shell session runs as, from the password database.
public struct ShellAccount: Hashable, Sendable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t
    public var home: String
    /// The login shell (`/bin/sh` when the database names none).
    public var shell: String
    /// Every group the account is in (its primary one and the others in the group database), as the
    /// shell gets them: given to setpriv as they are, so the groups checked are the groups used.
    public var groups: [gid_t]

    public init(name: String, uid: uid_t, gid: gid_t, home: String, shell: String, groups: [gid_t]? = nil) {
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home
        self.shell = shell
        self.groups = groups ?? [gid]
    }
}

/// Which account runs a shell, and how it is started (docs/SESSIONS.md). The decisions are pure functions;
/// the lookups and the account's creation are the system calls beside them.
public enum ShellAccounts {
    /// The unprivileged account a root agent runs shells as when no `--shell-user` is given, created on
    /// first use (as SSM's agent creates ssm-user, but without sudo rights).
    public static let defaultUser = "jumpgate-user"

    /// What to do for a shell session: run as this account (creating it first if missing: only ever the
    /// default one).
    public struct Choice: Hashable, Sendable {
        public var name: String
        public var createIfMissing: Bool
        /// Named by the session's document (runAsDefaultUser), not by the agent's operator: such an
        /// account must not be privileged.
        public var requested = false
    }

    /// Why no shell can be started for this session; the text reaches the user.
    public struct Refusal: Error, Hashable, Sendable, CustomStringConvertible {
        public let description: String
        /// Whether a rule refused (the account is not one this agent starts shells as: audited as
        /// `SessionRefused` with `refusedBy` `shell-account`), rather than the host failing (useradd could not
        /// create the default account).
        public let isDecision: Bool

        init(_ description: String, isDecision: Bool = true) {
            self.description = description
            self.isDecision = isDecision
        }
    }

    /// Decides the account: an agent that is not root can only run shells as itself; a root agent runs them
    /// as `configured` (root only when configured so) or as ``defaultUser``. `requested` is the session
    /// document's runAsDefaultUser (the account's preferences): a root agent without `--shell-user` runs the
    /// shell as that account if its operator allowed it (`allowed`, `--allow-run-as`; never root, never one
    /// that must be created), so a compromised gateway cannot choose an account with sudo rights; an agent
    /// whose operator named an account, or that is not root, serves only sessions that ask for that account
    /// or for none.
    public static func choose(
        configured: String?,
        requested: String? = nil,
        allowed: Set<String> = [],
        agentIsRoot: Bool,
        agentUser: String
    ) -> Result<Choice, Refusal> {
        if let configured, !Self.isValidName(configured) {
            return .failure(Refusal("--shell-user '\(configured)' is not a valid user name"))
        }
        if let requested {
            guard Self.isValidName(requested) else {
                return .failure(
                    Refusal("the session document's runAsDefaultUser '\(requested)' is not a valid user name")
                )
            }
            let serves = configured ?? (agentIsRoot ? nil : agentUser)
            if let serves, serves != requested {
                return .failure(
                    Refusal(
                        "the session document asks for shells as \(requested), but this agent runs them only as \(serves) (its --shell-user, or the account it runs as): change the preferences' runAsDefaultUser, or the agent's --shell-user"
                    )
                )
            }
            if serves == nil {
                guard requested != "root" else {
                    return .failure(
                        Refusal(
                            "the session document asks for root shells, which only the agent's operator can allow (jumpgate agent run --shell-user root)"
                        )
                    )
                }
                guard allowed.contains(requested) else {
                    return .failure(
                        Refusal(
                            "the session document asks for shells as \(requested), which this agent's operator has not allowed (jumpgate agent run --allow-run-as \(requested))"
                        )
                    )
                }
                return .success(Choice(name: requested, createIfMissing: false, requested: true))
            }
        }
        guard agentIsRoot else {
            if let configured, configured != agentUser {
                return .failure(
                    Refusal(
                        "the agent runs as \(agentUser) and cannot start a shell as \(configured): run it as root to serve shells as another user, or drop --shell-user"
                    )
                )
            }
            return .success(Choice(name: agentUser, createIfMissing: false))
        }
        guard let configured else { return .success(Choice(name: Self.defaultUser, createIfMissing: true)) }
        return .success(Choice(name: configured, createIfMissing: false))
    }

    /// The account found for `choice`, checked: the default account must not be privileged (an existing
    /// `jumpgate-user` with uid or gid 0 would give root shells nobody configured); a named account is the
    /// operator's choice. An account whose login shell refuses every session (`nologin`, `false`: a system
    /// or systemd dynamic account, as an agent without root runs as) is refused with what to do, instead of
    /// the shell's own "This account is currently not available."
    public static func check(_ account: ShellAccount, for choice: Choice) -> Result<ShellAccount, Refusal> {
        let shellName = account.shell.split(separator: "/").last.map(String.init) ?? account.shell
        if Self.refusingShells.contains(shellName) {
            return .failure(
                Refusal(
                    "the account \(account.name) has no login shell (\(account.shell) refuses every session): give it one (usermod -s /bin/bash \(account.name)), or run the agent as root to run shells as another account (--shell-user; packaging/jumpgate-agent-shell.service)"
                )
            )
        }
        if choice.requested, account.uid == 0 || account.gid == 0 || account.groups.contains(0) {
            return .failure(
                Refusal(
                    "the account \(account.name) has uid \(account.uid), gid \(account.gid) and groups \(account.groups.map(String.init).joined(separator: ",")): a session document cannot ask for a privileged shell (root's uid or group); only the agent's --shell-user can"
                )
            )
        }
        if choice.createIfMissing, account.uid == 0 || account.gid == 0 || account.groups.contains(0) {
            return .failure(
                Refusal(
                    "the account \(account.name) has uid \(account.uid) and gid \(account.gid): the default shell account must not be privileged; fix it, or name an account with --shell-user"
                )
            )
        }
        return .success(account)
    }

    /// Login shells that refuse every session.
    static let refusingShells: Set<String> = ["nologin", "false"]

    /// One account creation at a time (concurrent useradd runs fail on the password file's lock).
    private static let creation = NIOLock()

    /// A POSIX-portable user name (letters, digits, `.`, `_`, `-`; not starting with `-`; at most 32).
    public static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 32, name.first != "-" else { return false }
        return name.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
    }

    /// How the shell is started for `account`: its login shell (`-l`), or that shell running `command` (`-c`,
    /// not a login shell, as SSM's agent runs commands with `sh -c`), in its home directory, with a clean
    /// environment. A root agent switches to another account with setpriv (real and effective ids, its
    /// groups); posix_spawn cannot change users itself.
    public static func launch(
        for account: ShellAccount,
        agentIsRoot: Bool,
        sessionID: String,
        size: TerminalSize?,
        homeExists: Bool,
        command: String? = nil
    ) -> SpawnedProcess.Launch {
        let shell = account.shell.isEmpty ? "/bin/sh" : account.shell
        let shellArguments = command.map { [shell, "-c", $0] } ?? [shell, "-l"]
        let environment = [
            "HOME": account.home, "USER": account.name, "LOGNAME": account.name, "SHELL": shell,
            "PATH": account.uid == 0
                ? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" : "/usr/local/bin:/usr/bin:/bin",
            "TERM": "xterm-256color", "LANG": "C.UTF-8", "JUMPGATE_SESSION_ID": sessionID,
        ]
        let directory = homeExists ? account.home : "/"
        guard agentIsRoot, account.uid != 0 else {
            return .init(
                executable: shell,
                arguments: shellArguments,
                environment: environment,
                workingDirectory: directory,
                size: size
            )
        }
        return .init(
            executable: Self.setpriv,
            arguments: [
                "setpriv", "--reuid=\(account.uid)", "--regid=\(account.gid)",
                "--groups=" + account.groups.map(String.init).joined(separator: ","), "--",
            ] + shellArguments,
            environment: environment,
            workingDirectory: directory,
            size: size
        )
    }

    static let setpriv = "/usr/bin/setpriv"

    // MARK: the system

    /// The groups `name` is in, its primary group first (getgrouplist; at most 1,024).
    static func groups(of name: String, primary: gid_t) -> [gid_t] {
        var count: Int32 = 1024
        var groups = [gid_t](repeating: 0, count: Int(count))
        guard getgrouplist(name, primary, &groups, &count) >= 0 else { return [primary] }
        let found = Array(groups.prefix(Int(count)))
        return [primary] + found.filter { $0 != primary }
    }

    /// The account named `name`, or nil if there is none.
    public static func lookup(_ name: String) -> ShellAccount? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return ShellAccount(
            name: name,
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            home: String(cString: entry.pw_dir),
            shell: String(cString: entry.pw_shell),
            groups: Self.groups(of: name, primary: entry.pw_gid)
        )
    }

    /// The account this process runs as.
    public static func current() -> ShellAccount? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getpwuid_r(geteuid(), &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return Self.lookup(String(cString: entry.pw_name))
    }

    /// Resolves `choice` to an account, creating the default one with `useradd` if it is missing. Blocks
    /// (useradd): call it off the event loops.
    public static func resolve(_ choice: Choice) throws(Refusal) -> ShellAccount {
        Self.creation.lock()
        defer { Self.creation.unlock() }
        return try Self.check(try Self.findOrCreate(choice), for: choice).get()
    }

    static func findOrCreate(_ choice: Choice) throws(Refusal) -> ShellAccount {
        let name = choice.name
        if let account = Self.lookup(name) { return account }
        guard choice.createIfMissing else {
            throw Refusal(
                choice.requested
                    ? "the user \(name) (the session document's runAsDefaultUser) does not exist on this host: create it, or change the preferences"
                    : "the user \(name) does not exist on this host: create it, or give another with --shell-user"
            )
        }
        let shell = FileManager.default.isExecutableFile(atPath: "/bin/bash") ? "/bin/bash" : "/bin/sh"
        var errors: [Int32] = [-1, -1]
        guard pipe(&errors) == 0 else {
            throw Refusal(
                "could not create the user \(name): no pipe for useradd: \(String(cString: strerror(errno)))",
                isDecision: false
            )
        }
        let launch = SpawnedProcess.Launch(
            executable: "/usr/sbin/useradd",
            arguments: [
                "useradd", "--create-home", "--user-group", "--shell", shell, "--comment", "Jumpgate shells", name,
            ],
            environment: ProcessInfo.processInfo.environment
        )
        let process: SpawnedProcess
        do {
            process = try SpawnedProcess.spawn(launch, what: "useradd") { actions in
                posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
            }
        } catch {
            close(errors[0])
            close(errors[1])
            throw Refusal("could not create the user \(name): \(error)", isDecision: false)
        }
        close(errors[1])
        let message = String(decoding: FileDescriptorIO.readToEnd(errors[0]), as: UTF8.self)
        close(errors[0])
        let status = process.waitForExit()
        // Another session may have created it meanwhile (useradd exits 9: the name is taken).
        guard let account = Self.lookup(name) else {
            throw Refusal("could not create the user \(name): useradd \(status): \(message)", isDecision: false)
        }
        return account
    }
}
