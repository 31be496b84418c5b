import ArgumentParser
import FoundationEssentials
import Glibc
import JumpgateAgent
import JumpgateNIO
import JumpgateWire

/// `jumpgate agent allow-list`: shows or replaces what the agent may reach, and tells a running agent
/// (SIGHUP): new connections follow the new lists at once, open ones stay, no session drops.
struct AgentAllowListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allow-list",
        abstract: "Show or replace the agent's allow- and deny-lists; a running agent applies them at once."
    )

    @Option(name: .long, help: "The state directory written by 'agent register'.") var stateDir: String
    @Option(name: .long, help: "The new allow-list (repeatable HOST:PORTS); with no --allow and no --deny, show it.")
    var allow: [String] = []
    @Option(name: .long, help: "The new deny-list (repeatable HOST:PORTS).") var deny: [String] = []
    @Option(name: .long, help: OutputFormat.help("{\"Allow\", \"Deny\", \"AppliedTo\": pid or null}.")) var format:
        OutputFormat = .text

    func validate() throws {
        do {
            _ = try AllowList(allow: self.allow, deny: self.deny)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        var state: AgentStateDirectory
        do {
            state = try AgentStateDirectory.load(from: self.stateDir)
        } catch {
            throw CommandFailure("\(error)")
        }
        var applied: Int32?
        if !self.allow.isEmpty || !self.deny.isEmpty {
            guard let ca = try? String(contentsOfFile: state.caFile, encoding: .utf8) else {
                throw CommandFailure("\(state.caFile) cannot be read; register again with --force.")
            }
            state.allow = self.allow
            state.deny = self.deny
            do {
                try state.save(caPEM: ca)
            } catch {
                throw CommandFailure("\(error)")
            }
            // A running agent holds the lock on agent.pid: tell it.
            if let pid = PIDFileLock.holder(self.stateDir + "/agent.pid"), kill(pid, SIGHUP) == 0 {
                applied = pid
            }
        }
        switch self.format {
        case .json:
            let answer: JSONValue = [
                "Allow": .array(state.allow.map { .string($0) }), "Deny": .array(state.deny.map { .string($0) }),
                "AppliedTo": applied.map { .integer(Int64($0)) } ?? .null,
            ]
            emit(answer.serialized() + "\n")
        case .text:
            var text = "allow: \(state.allow.isEmpty ? "(nothing)" : state.allow.joined(separator: " "))\n"
            text += "deny: \(state.deny.isEmpty ? "(nothing)" : state.deny.joined(separator: " "))\n"
            if let applied { text += "applied to the running agent (pid \(applied))\n" }
            emit(text)
        }
    }
}
