import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import Testing

/// Shell sessions in the session state machine and the stream table: what goes where, what is refused,
/// and how the agent's end waits for the client to have everything.
@Suite("Terminal sessions: routing, refusals and the end")
struct TerminalSessionTests {
    static func sent(_ result: SessionStateMachine.SendResult) throws -> ByteBuffer {
        try #require(result.frame)
    }

    @Test("a shell session negotiates basic mode as a terminal on both sides")
    func negotiation() throws {
        var pair = MachinePair(sessionType: "Standard_Stream")
        pair.establish()
        let agent = try #require(pair.agent.negotiated)
        let client = try #require(pair.client.negotiated)
        #expect(agent.isTerminal && client.isTerminal)
        #expect(agent.mode == .basic && client.mode == .basic)
        #expect(client.extensions.contains(.exitCodes))
        #expect(!MachinePair().agent.isEnded)
    }

    @Test("size goes to the agent, stderr and the exit code to the client")
    func routing() throws {
        var pair = MachinePair(sessionType: "Standard_Stream")
        pair.establish()
        let size = TerminalSize(columns: 120, rows: 40)
        pair.toAgent.append(try Self.sent(pair.client.sendControl(.size, size.encoded(), now: pair.clock.now)))
        pair.toClient.append(
            try Self.sent(pair.agent.sendControl(.stdErr, ByteBuffer(string: "oops\n"), now: pair.clock.now))
        )
        pair.toClient.append(
            try Self.sent(pair.agent.sendControl(.exitCode, ExitCodePayload(code: 3).encoded(), now: pair.clock.now))
        )
        pair.pump()
        #expect(pair.agentEvents.contains(.terminalSize(size)))
        #expect(pair.clientEvents.contains(.standardError(ByteBuffer(string: "oops\n"))))
        #expect(pair.clientEvents.contains(.exitCode(3)))
        #expect(pair.agentEvents.allSatisfy { $0.refusal == nil } && pair.clientEvents.allSatisfy { $0.refusal == nil })
    }

    @Test(
        "refused: size to a client or in a port session, an unreadable size, an exit code to an agent, without exit-code, or unreadable"
    )
    func refusals() throws {
        // Wrong direction, both ways.
        var shell = MachinePair(sessionType: "Standard_Stream")
        shell.establish()
        shell.toClient.append(
            try Self.sent(
                shell.agent.sendControl(.size, TerminalSize(columns: 1, rows: 1).encoded(), now: shell.clock.now)
            )
        )
        shell.toAgent.append(
            try Self.sent(shell.client.sendControl(.exitCode, ExitCodePayload(code: 1).encoded(), now: shell.clock.now))
        )
        shell.toAgent.append(
            try Self.sent(shell.client.sendControl(.stdErr, ByteBuffer(string: "x"), now: shell.clock.now))
        )
        shell.pump()
        #expect(shell.clientEvents.compactMap(\.refusal) == [.unexpectedMessage])
        #expect(shell.agentEvents.compactMap(\.refusal) == [.unexpectedMessage, .unexpectedMessage])

        // Unreadable payloads.
        var bad = MachinePair(sessionType: "Standard_Stream")
        bad.establish()
        bad.toAgent.append(
            try Self.sent(
                bad.client.sendControl(.size, ByteBuffer(string: "{\"cols\":70000,\"rows\":1}"), now: bad.clock.now)
            )
        )
        bad.toClient.append(
            try Self.sent(bad.agent.sendControl(.exitCode, ByteBuffer(string: "EXIT: 1"), now: bad.clock.now))
        )
        bad.pump()
        #expect(bad.agentEvents.compactMap(\.refusal) == [.invalidPayload])
        #expect(bad.clientEvents.compactMap(\.refusal) == [.invalidPayload])

        // A port session takes no size; a client that did not accept exit-code takes no exit code.
        var port = MachinePair()
        port.establish()
        port.toAgent.append(
            try Self.sent(
                port.client.sendControl(.size, TerminalSize(columns: 1, rows: 1).encoded(), now: port.clock.now)
            )
        )
        port.pump()
        #expect(port.agentEvents.compactMap(\.refusal) == [.unexpectedMessage])
        var official = MachinePair(
            clientSupports: JumpgateExtensions.all.subtracting(.exitCodes),
            sessionType: "Standard_Stream"
        )
        official.establish()
        #expect(official.client.negotiated?.extensions.contains(.exitCodes) == false)
        official.toClient.append(
            try Self.sent(
                official.agent.sendControl(.exitCode, ExitCodePayload(code: 1).encoded(), now: official.clock.now)
            )
        )
        official.pump()
        #expect(official.clientEvents.compactMap(\.refusal) == [.unexpectedMessage])
        #expect(!official.clientEvents.contains(.exitCode(1)))
    }

    @Test("the agent's end waits until the client acknowledged everything, and no longer than its deadline")
    func endWhenDelivered() throws {
        // Official acknowledgements (one per message): the client acknowledges on receipt.
        var pair = MachinePair(clientSupports: [.exitCodes], sessionType: "Standard_Stream")
        pair.establish()
        pair.toClient.append(try Self.sent(pair.agentSends("bye\r\n")))
        var actions: [SessionStateMachine.Action] = []
        pair.agent.endWhenDelivered(
            reason: "The shell exited with status 0.",
            byPeer: true,
            now: pair.clock.now,
            within: .seconds(2),
            into: &actions
        )
        #expect(actions.isEmpty && !pair.agent.isEnded)
        pair.pump()
        #expect(pair.agentEvents.compactMap(\.endReason).map(\.0) == ["The shell exited with status 0."])
        #expect(pair.agentEvents.compactMap(\.endReason).map(\.1) == [true])

        // A client that acknowledges nothing: the end comes at the deadline, which the timer waits for.
        var silent = MachinePair(clientSupports: [.exitCodes], sessionType: "Standard_Stream")
        silent.establish()
        _ = try Self.sent(silent.agentSends("bye"))
        actions = []
        silent.agent.endWhenDelivered(
            reason: "done",
            byPeer: true,
            now: silent.clock.now,
            within: .seconds(2),
            into: &actions
        )
        let deadline = try #require(silent.agent.deadline(mayResend: false))
        #expect(deadline <= silent.clock.now + .seconds(2))
        silent.agent.timerFired(
            now: silent.clock.now + .seconds(2) - .milliseconds(1),
            mayResend: false,
            into: &actions
        )
        #expect(!silent.agent.isEnded)
        silent.agent.timerFired(now: silent.clock.now + .seconds(2), mayResend: false, into: &actions)
        #expect(silent.agent.isEnded)
        #expect(actions.compactMap(\.endReason).map(\.0) == ["done"])

        // Nothing unacknowledged: at once.
        var idle = MachinePair(clientSupports: [.exitCodes], sessionType: "Standard_Stream")
        idle.establish()
        actions = []
        idle.agent.endWhenDelivered(
            reason: "now",
            byPeer: true,
            now: idle.clock.now,
            within: .seconds(2),
            into: &actions
        )
        #expect(actions.compactMap(\.endReason).map(\.0) == ["now"])
    }
}

/// The stream table in a terminal session: one stream, opened on both sides at the start, never dialled
/// again, ended with the program.
@Suite("Terminal sessions: the stream table")
struct TerminalStreamTableTests {
    typealias Action = StreamTable.Action

    static func table(agent: Bool) -> (StreamTable, [Action]) {
        var table = StreamTable(isAgent: agent)
        var actions: [Action] = []
        let negotiated = NegotiatedSession(
            sessionType: "Standard_Stream",
            properties: [:],
            agentVersion: "3.3.1802.0",
            clientVersion: "1.2.707.0",
            mode: .basic,
            extensions: .all
        )
        table.establish(negotiated, into: &actions)
        return (table, actions)
    }

    static func drain(_ table: inout StreamTable) -> [UInt8] {
        var sent: [UInt8] = []
        while let chunk = table.nextChunk(on: StreamTable.basicStreamID) {
            var payload = ByteBuffer()
            table.writeChunk(chunk, into: &payload)
            sent += payload.readableBytesView
        }
        return sent
    }

    @Test("the agent's terminal closes: its last output goes, then terminalEnded; no flag, no second dial")
    func agentEnd() throws {
        var (table, actions) = Self.table(agent: true)
        #expect(table.isTerminal)
        #expect(actions == [.dial(StreamTable.basicStreamID)])
        actions = []
        let connection = try #require(table.attach(StreamTable.basicStreamID, into: &actions))
        table.localRead(StreamTable.basicStreamID, connection, ByteBuffer(string: "logout\r\n"))
        let closed = table.localClosed(StreamTable.basicStreamID, connection, into: &actions)
        #expect(closed)
        #expect(Self.drain(&table) == Array("logout\r\n".utf8))
        actions = []
        table.pumped(StreamTable.basicStreamID, into: &actions)
        #expect(actions.contains(.terminalEnded))
        #expect(!actions.contains(.sendFlag(.disconnectToPort)))
        // Input after the end is dropped, not dialled again (a port session's agent would dial).
        actions = []
        table.basicDataReceived(ByteBuffer(string: "ls\r"), into: &actions)
        #expect(!actions.contains(.dial(StreamTable.basicStreamID)))
        // A client's DisconnectToPort means nothing here.
        table.peerDisconnected(into: &actions)
        #expect(!actions.contains { if case .close = $0 { return true } else { return false } })
    }

    @Test(
        "the client opens its terminal at the start; output before it is held, not withheld; its input's end is Ctrl+D"
    )
    func clientSide() throws {
        var (table, actions) = Self.table(agent: false)
        #expect(actions == [.dial(StreamTable.basicStreamID)])
        #expect(!table.withholdsBasicOutput)
        actions = []
        table.basicDataReceived(ByteBuffer(string: "$ "), into: &actions)
        #expect(actions.allSatisfy { if case .write = $0 { return false } else { return true } })
        let connection = try #require(table.attach(StreamTable.basicStreamID, into: &actions))
        #expect(
            actions.contains(.write(connection, StreamTable.basicStreamID, ByteBuffer(string: "$ "), confirm: true))
        )
        table.localRead(StreamTable.basicStreamID, connection, ByteBuffer(string: "exit\n"))
        let owned = table.localEOF(StreamTable.basicStreamID, connection)
        #expect(owned)
        #expect(Self.drain(&table) == Array("exit\n".utf8) + [StreamTable.endOfFileKey])
        actions = []
        table.pumped(StreamTable.basicStreamID, into: &actions)
        #expect(!actions.contains(.sendFlag(.disconnectToPort)) && !actions.contains(.terminalEnded))
    }

    @Test("the session's end closes a terminal stream after what was written to it (a reset would drop it)")
    func endClosesTerminals() throws {
        for agent in [true, false] {
            var (table, actions) = Self.table(agent: agent)
            let connection = try #require(table.attach(StreamTable.basicStreamID, into: &actions))
            actions = []
            table.endAll(into: &actions)
            #expect(actions == [.close(connection, .all)])
        }
    }

    @Test("a shell that cannot start ends the session with the reason")
    func refusal() {
        var (agent, _) = Self.table(agent: true)
        var actions: [Action] = []
        agent.refuse(StreamTable.basicStreamID, reason: "the user x does not exist", into: &actions)
        #expect(actions == [.endSession(reason: "Unable to start the shell: the user x does not exist")])
    }
}
