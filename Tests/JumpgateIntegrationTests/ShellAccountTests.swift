import Foundation
import JumpgateWire
import Testing

@testable import JumpgateAgent

/// Which account runs a shell, and how it is started: pure decisions, every refusal covered.
@Suite("Shell accounts: the run-as decision and the launch")
struct ShellAccountTests {
    @Test("a root agent: the default account (created if missing) unless one is named; root only when named")
    func rootAgent() throws {
        #expect(
            try ShellAccounts.choose(configured: nil, agentIsRoot: true, agentUser: "root").get()
                == .init(name: ShellAccounts.defaultUser, createIfMissing: true)
        )
        #expect(
            try ShellAccounts.choose(configured: "deploy", agentIsRoot: true, agentUser: "root").get()
                == .init(name: "deploy", createIfMissing: false)
        )
        #expect(
            try ShellAccounts.choose(configured: "root", agentIsRoot: true, agentUser: "root").get()
                == .init(name: "root", createIfMissing: false)
        )
    }

    @Test("refused: a default account with uid or gid 0; a named one is the operator's choice")
    func privilegedDefault() throws {
        let defaultChoice = ShellAccounts.Choice(name: ShellAccounts.defaultUser, createIfMissing: true)
        for (uid, gid) in [(0, 1001), (1001, 0), (0, 0)] {
            let account = ShellAccount(
                name: ShellAccounts.defaultUser,
                uid: uid_t(uid),
                gid: gid_t(gid),
                home: "/home/x",
                shell: "/bin/sh"
            )
            guard case .failure(let refusal) = ShellAccounts.check(account, for: defaultChoice) else {
                Issue.record("a privileged default account (\(uid):\(gid)) was accepted")
                continue
            }
            #expect(refusal.description.contains("must not be privileged"))
            #expect(refusal.isDecision, "a rule refused: audited as SessionRefused")
        }
        let root = ShellAccount(name: "root", uid: 0, gid: 0, home: "/root", shell: "/bin/sh")
        #expect(try ShellAccounts.check(root, for: .init(name: "root", createIfMissing: false)).get() == root)
        let plain = ShellAccount(name: ShellAccounts.defaultUser, uid: 1001, gid: 1001, home: "/h", shell: "/bin/sh")
        #expect(try ShellAccounts.check(plain, for: defaultChoice).get() == plain)
    }

    @Test("refused, saying what to do: an account whose login shell refuses every session (nologin, false)")
    func accountWithoutShell() throws {
        let choice = ShellAccounts.Choice(name: "nobody", createIfMissing: false)
        for shell in ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"] {
            let account = ShellAccount(name: "nobody", uid: 65534, gid: 65534, home: "/nonexistent", shell: shell)
            guard case .failure(let refusal) = ShellAccounts.check(account, for: choice) else {
                Issue.record("an account with \(shell) as its shell was accepted")
                continue
            }
            #expect(refusal.description.contains("has no login shell (\(shell) refuses every session)"))
            #expect(refusal.description.contains("usermod -s /bin/bash nobody"))
            #expect(refusal.isDecision, "a rule refused: audited as SessionRefused")
        }
        for shell in ["/bin/sh", "/bin/bash", "/usr/bin/zsh", "/usr/local/bin/falsehood"] {
            let account = ShellAccount(name: "u", uid: 1001, gid: 1001, home: "/home/u", shell: shell)
            #expect(try ShellAccounts.check(account, for: choice).get() == account)
        }
    }

    @Test("an agent that is not root runs shells as itself, and refuses another account")
    func unprivilegedAgent() throws {
        #expect(
            try ShellAccounts.choose(configured: nil, agentIsRoot: false, agentUser: "jump").get()
                == .init(name: "jump", createIfMissing: false)
        )
        #expect(
            try ShellAccounts.choose(configured: "jump", agentIsRoot: false, agentUser: "jump").get()
                == .init(name: "jump", createIfMissing: false)
        )
        guard
            case .failure(let refusal) = ShellAccounts.choose(configured: "root", agentIsRoot: false, agentUser: "jump")
        else {
            Issue.record("an unprivileged agent must not promise a root shell")
            return
        }
        #expect(refusal.description.contains("cannot start a shell as root"))
        #expect(refusal.isDecision, "a rule refused: audited as SessionRefused")
    }

    @Test("the document's runAsDefaultUser: a root agent without --shell-user takes it (never root); others must match")
    func requestedAccount() throws {
        #expect(
            try ShellAccounts.choose(
                configured: nil,
                requested: "deploy",
                allowed: ["deploy"],
                agentIsRoot: true,
                agentUser: "root"
            ).get() == .init(name: "deploy", createIfMissing: false, requested: true)
        )
        #expect(
            try ShellAccounts.choose(configured: "deploy", requested: "deploy", agentIsRoot: true, agentUser: "root")
                .get() == .init(name: "deploy", createIfMissing: false)
        )
        #expect(
            try ShellAccounts.choose(configured: nil, requested: "jump", agentIsRoot: false, agentUser: "jump").get()
                == .init(name: "jump", createIfMissing: false)
        )
        let refusals: [(String?, String, Bool, String)] = [
            (nil, "root", true, "only the agent's operator can allow"),
            (nil, "ubuntu", true, "has not allowed (jumpgate agent run --allow-run-as ubuntu)"),
            ("deploy", "other", true, "runs them only as deploy"),
            (nil, "other", false, "runs them only as jump"),
            (nil, "a b", true, "is not a valid user name"),
            ("root", "deploy", true, "runs them only as root"),
        ]
        for (configured, requested, root, expected) in refusals {
            let result = ShellAccounts.choose(
                configured: configured,
                requested: requested,
                agentIsRoot: root,
                agentUser: root ? "root" : "jump"
            )
            guard case .failure(let refusal) = result else {
                Issue.record("\(requested) was accepted (configured \(configured ?? "none"), root \(root))")
                continue
            }
            #expect(refusal.description.contains(expected), "\(refusal)")
            #expect(refusal.isDecision, "a rule refused: audited as SessionRefused")
        }
        // An account the document names must not be privileged, whatever its name.
        let requested = ShellAccounts.Choice(name: "toor", createIfMissing: false, requested: true)
        for (uid, gid, groups) in [(0, 0, [0]), (0, 1001, [1001]), (1001, 0, [0]), (1001, 1001, [1001, 27, 0])] {
            let toor = ShellAccount(
                name: "toor",
                uid: uid_t(uid),
                gid: gid_t(gid),
                home: "/root",
                shell: "/bin/sh",
                groups: groups.map { gid_t($0) }
            )
            guard case .failure(let refusal) = ShellAccounts.check(toor, for: requested) else {
                Issue.record("a privileged account (\(uid):\(gid) \(groups)) named by a document was accepted")
                continue
            }
            #expect(refusal.description.contains("cannot ask for a privileged shell"))
            #expect(refusal.isDecision, "a rule refused: audited as SessionRefused")
        }
    }

    @Test(
        "refused: names that are not user names",
        arguments: ["", "-rf", "a b", "x;id", "../etc", String(repeating: "a", count: 33)]
    )
    func invalidNames(_ name: String) {
        guard case .failure(let refusal) = ShellAccounts.choose(configured: name, agentIsRoot: true, agentUser: "root")
        else {
            Issue.record("'\(name)' was accepted")
            return
        }
        #expect(refusal.description.contains("is not a valid user name"))
        #expect(refusal.isDecision, "a rule refused: audited as SessionRefused")
    }

    @Test("refused, as a decision: an account that does not exist and is not the default one to create")
    func missingAccount() {
        for choice in [
            ShellAccounts.Choice(name: "jumpgate-no-such-user", createIfMissing: false),
            ShellAccounts.Choice(name: "jumpgate-no-such-user", createIfMissing: false, requested: true),
        ] {
            do {
                _ = try ShellAccounts.findOrCreate(choice)
                Issue.record("a missing account was found")
            } catch {
                #expect(error.description.contains("does not exist on this host"), "\(error)")
                #expect(error.isDecision)
            }
        }
    }

    @Test("a failure, not a decision: useradd cannot create the account (a name it rejects)")
    func creationFails() {
        // Never a valid name (choose refuses it before this point), so useradd refuses and creates nothing.
        let choice = ShellAccounts.Choice(name: "jumpgate invalid", createIfMissing: true)
        do {
            _ = try ShellAccounts.findOrCreate(choice)
            Issue.record("an account with a space in its name was created")
        } catch {
            #expect(error.description.hasPrefix("could not create the user jumpgate invalid"), "\(error)")
            #expect(!error.isDecision, "useradd failing is not a rule's refusal")
        }
    }

    @Test("the launch: a login shell in its home; a root agent switches users with setpriv, never for root")
    func launch() {
        let user = ShellAccount(name: "deploy", uid: 1001, gid: 1001, home: "/home/deploy", shell: "/bin/bash")
        let size = TerminalSize(columns: 80, rows: 24)
        let switched = ShellAccounts.launch(
            for: user,
            agentIsRoot: true,
            sessionID: "s-1",
            size: size,
            homeExists: true
        )
        #expect(switched.executable == "/usr/bin/setpriv")
        #expect(
            switched.arguments == [
                "setpriv", "--reuid=1001", "--regid=1001", "--groups=1001", "--", "/bin/bash", "-l",
            ]
        )
        #expect(switched.workingDirectory == "/home/deploy" && switched.size == size)
        #expect(switched.environment["HOME"] == "/home/deploy" && switched.environment["USER"] == "deploy")
        #expect(
            switched.environment["TERM"] == "xterm-256color" && switched.environment["JUMPGATE_SESSION_ID"] == "s-1"
        )

        let own = ShellAccounts.launch(for: user, agentIsRoot: false, sessionID: "s-1", size: nil, homeExists: false)
        #expect(own.executable == "/bin/bash" && own.arguments == ["/bin/bash", "-l"])
        #expect(own.workingDirectory == "/")

        let root = ShellAccount(name: "root", uid: 0, gid: 0, home: "/root", shell: "")
        let rootLaunch = ShellAccounts.launch(
            for: root,
            agentIsRoot: true,
            sessionID: "s-1",
            size: nil,
            homeExists: true
        )
        #expect(rootLaunch.executable == "/bin/sh" && rootLaunch.arguments == ["/bin/sh", "-l"])
        #expect(rootLaunch.environment["PATH"]?.contains("/usr/sbin") == true)
    }

    @Test("a command: the account's shell runs it with -c (not a login shell), switched by setpriv as a shell is")
    func commandLaunch() {
        let user = ShellAccount(name: "deploy", uid: 1001, gid: 1001, home: "/home/deploy", shell: "/bin/bash")
        let switched = ShellAccounts.launch(
            for: user,
            agentIsRoot: true,
            sessionID: "s-1",
            size: nil,
            homeExists: true,
            command: "ls | wc -l"
        )
        #expect(
            switched.arguments == [
                "setpriv", "--reuid=1001", "--regid=1001", "--groups=1001", "--", "/bin/bash", "-c", "ls | wc -l",
            ]
        )
        let own = ShellAccounts.launch(
            for: user,
            agentIsRoot: false,
            sessionID: "s-1",
            size: nil,
            homeExists: true,
            command: "exit 3"
        )
        #expect(own.executable == "/bin/bash" && own.arguments == ["/bin/bash", "-c", "exit 3"])
    }
}

/// Which sessions an agent serves: every refusal.
@Suite("Session admission on the agent")
struct SessionAdmissionTests {
    @Test("port sessions always; shells and commands only with --allow-shell")
    func served() throws {
        #expect(try SessionAdmission.decide(sessionType: "Port", allowShell: false).get() == .port)
        #expect(try SessionAdmission.decide(sessionType: "Port", allowShell: true).get() == .port)
        #expect(try SessionAdmission.decide(sessionType: "Standard_Stream", allowShell: true).get() == .shell)
        let document: JSONValue = ["properties": ["linux": ["commands": "ls -l | wc -l", "runAsElevated": false]]]
        #expect(
            try SessionAdmission.decide(sessionType: "InteractiveCommands", allowShell: true, document: document).get()
                == .command("ls -l | wc -l", interactive: true)
        )
        #expect(
            try SessionAdmission.decide(sessionType: "NonInteractiveCommands", allowShell: true, document: document)
                .get() == .command("ls -l | wc -l", interactive: false)
        )
        // SSM documents may give commands as a list of lines.
        let lines: JSONValue = ["properties": ["linux": ["commands": ["cd /tmp", "pwd"]]]]
        #expect(
            try SessionAdmission.decide(sessionType: "NonInteractiveCommands", allowShell: true, document: lines).get()
                == .command("cd /tmp\npwd", interactive: false)
        )
    }

    static func document(_ commands: JSONValue?) -> JSONValue {
        guard let commands else { return ["properties": [:]] }
        return ["properties": ["linux": ["commands": commands]]]
    }

    @Test(
        "refused: a shell or a command without --allow-shell, a command document without a usable command, anything else",
        arguments: [
            ("Standard_Stream", false, nil, SessionAdmission.shellsOff, "allow-shell"),
            ("InteractiveCommands", false, "ls", SessionAdmission.commandsOff, "allow-shell"),
            ("NonInteractiveCommands", false, "ls", SessionAdmission.commandsOff, "allow-shell"),
            ("NonInteractiveCommands", true, nil, "The session document gives no command to run.", "document"),
            ("InteractiveCommands", true, "  \n ", "The command to run is empty.", "document"),
            (
                "NonInteractiveCommands", true,
                String(repeating: "x", count: SessionAdmission.maximumCommandLength + 1),
                "The command is longer than 16384 bytes.", "document"
            ),
            ("NonInteractiveCommands", true, "echo a\u{0}b", "The command contains a NUL byte.", "document"),
            ("Shell", true, nil, "Unknown session type 'Shell'.", "session-type"),
            ("", true, nil, "Unknown session type ''.", "session-type"),
        ] as [(String, Bool, String?, String, String)]
    )
    func refused(_ sessionType: String, _ allowShell: Bool, _ command: String?, _ reason: String, _ rule: String) {
        let document = Self.document(command.map { .string($0) })
        guard
            case .failure(let refusal) = SessionAdmission.decide(
                sessionType: sessionType,
                allowShell: allowShell,
                document: document
            )
        else {
            Issue.record("\(sessionType) was admitted")
            return
        }
        #expect(refusal.description == reason)
        #expect(refusal.refusedBy == rule)
        #expect(refusal.description.utf8.count + "the session has ended: ".utf8.count <= 123)
    }

    @Test("a command document whose commands are not text is refused")
    func commandsNotText() {
        for commands: JSONValue in [42, ["ls", 1], ["a": "b"]] {
            let result = SessionAdmission.decide(
                sessionType: "NonInteractiveCommands",
                allowShell: true,
                document: Self.document(commands)
            )
            #expect(result == .failure(.init("document", "The session document gives no command to run.")))
        }
    }
}
