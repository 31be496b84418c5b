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
        }
        let root = ShellAccount(name: "root", uid: 0, gid: 0, home: "/root", shell: "/bin/sh")
        #expect(try ShellAccounts.check(root, for: .init(name: "root", createIfMissing: false)).get() == root)
        let plain = ShellAccount(name: ShellAccounts.defaultUser, uid: 1001, gid: 1001, home: "/h", shell: "/bin/sh")
        #expect(try ShellAccounts.check(plain, for: defaultChoice).get() == plain)
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
                "setpriv", "--reuid=1001", "--regid=1001", "--init-groups", "--", "/bin/bash", "-l",
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
}

/// Which sessions an agent serves: every refusal.
@Suite("Session admission on the agent")
struct SessionAdmissionTests {
    @Test("port sessions always; shells only with --allow-shell")
    func served() throws {
        #expect(try SessionAdmission.decide(sessionType: "Port", allowShell: false).get() == .port)
        #expect(try SessionAdmission.decide(sessionType: "Port", allowShell: true).get() == .port)
        #expect(try SessionAdmission.decide(sessionType: "Standard_Stream", allowShell: true).get() == .shell)
    }

    @Test(
        "refused: a shell without --allow-shell, commands (not yet), anything else",
        arguments: [
            ("Standard_Stream", false, SessionAdmission.shellsOff),
            ("InteractiveCommands", true, "This agent does not serve InteractiveCommands sessions yet."),
            ("NonInteractiveCommands", true, "This agent does not serve NonInteractiveCommands sessions yet."),
            ("Shell", true, "Unknown session type 'Shell'."),
            ("", true, "Unknown session type ''."),
        ]
    )
    func refused(_ sessionType: String, _ allowShell: Bool, _ reason: String) {
        guard case .failure(let refusal) = SessionAdmission.decide(sessionType: sessionType, allowShell: allowShell)
        else {
            Issue.record("\(sessionType) was admitted")
            return
        }
        #expect(refusal.description == reason)
        #expect(refusal.description.utf8.count + "the session has ended: ".utf8.count <= 123)
    }
}
