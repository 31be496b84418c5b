import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// The client's and the agent's session handlers back to back in one process (see ``BackToBack``): the
/// handshake, both stream modes, windows, resume, half-close and refusals, with no socket and no clock.
@Suite("Port sessions back to back")
struct PortSessionBackToBackTests {
    /// Sends `bytes` from a client connection to the agent's target and back, and checks both arrive whole.
    static func roundTrip(_ pair: BackToBack, bytes: Int) throws {
        let (local, id) = try pair.connect()
        try pair.settle()
        let target = try #require(pair.targets[id], "the agent attached no target for stream \(id)")
        let up = ByteBuffer.pattern(bytes, seed: 1)
        let down = ByteBuffer.pattern(bytes, seed: 2)
        try local.send(up)
        try target.send(down)
        try pair.settle()
        try target.collect()
        try local.collect()
        #expect(target.received == up, "upload arrived changed (\(target.received.readableBytes) of \(bytes) bytes)")
        #expect(local.received == down, "download arrived changed (\(local.received.readableBytes) of \(bytes) bytes)")
    }

    @Test("every combination of offered extensions negotiates the same session on both sides and carries data")
    func everyExtensionCombination() throws {
        let every = (0..<(1 << 7)).map { JumpgateExtensions(rawValue: $0) }
        for offered in every {
            let pair = try BackToBack(clientExtensions: .all, agentExtensions: offered)
            try pair.settle()
            let client = try #require(pair.clientEvents.established, "client not established with \(offered)")
            let agent = try #require(pair.agentEvents.established, "agent not established with \(offered)")
            #expect(client.extensions == offered && agent.extensions == offered)
            #expect(client.mode == .mux(smuxVersion: offered.contains(.smuxV2) ? 2 : 1, keepAlive: false))
            #expect(agent.mode == client.mode)
            try Self.roundTrip(pair, bytes: offered.contains(.largePayloads) ? 200_000 : 20_000)
        }
        // The client side narrows what the agent offers in the same way.
        for supported in every {
            let pair = try BackToBack(clientExtensions: supported, agentExtensions: .all)
            try pair.settle()
            #expect(pair.clientEvents.established?.extensions == supported)
            #expect(pair.agentEvents.established?.extensions == supported)
        }
    }

    @Test("basic mode: one connection at a time, the next waits, the agent re-dials on new data")
    func basicMode() throws {
        let pair = try BackToBack(properties: BackToBack.standardStream)
        try pair.settle()
        #expect(pair.clientEvents.established?.mode == .basic)
        #expect(pair.agentEvents.requested.count == 1, "the agent dials at once in basic mode")
        let (first, id) = try pair.connect()
        let (second, secondID) = try pair.connect()
        #expect(id == secondID)  // basic mode has one stream id
        #expect(pair.clientEvents.activated == 1, "the second connection was served at once; it must wait")
        try first.send(.pattern(5000, seed: 3))
        try pair.settle()
        let target = try #require(pair.targets[id])
        try target.collect()
        #expect(target.received == .pattern(5000, seed: 3))
        try target.send(.pattern(700, seed: 4))
        try pair.settle()
        try first.collect()
        #expect(first.received == .pattern(700, seed: 4))
        // The first connection ends: DisconnectToPort closes the target, and the waiting one is served.
        first.sendEOF()
        try pair.settle()
        #expect(!target.channel.isActive, "the agent closed the target after DisconnectToPort")
        #expect(pair.clientEvents.activated == 2)
        try second.send(.pattern(900, seed: 5))
        try pair.settle()
        #expect(pair.agentEvents.requested.count == 2, "new data re-dialled the target")
        let again = try #require(pair.targets[id])
        try again.collect()
        #expect(again.received == .pattern(900, seed: 5))
    }

    /// Holds the client's end of a program session once the session opens it.
    final class Opened {
        var value: FakeSocket?
    }

    /// A shell or command session, settled: the client's end (the user's terminal or output) is a fake
    /// socket, and the agent ends the session with `exitStatus` when the program's end closes.
    static func programSession(
        _ sessionType: String,
        _ clientExtensions: JumpgateExtensions,
        exitStatus: Int32,
        reason: String
    ) throws -> (BackToBack, Opened) {
        let pair = try BackToBack(clientExtensions: clientExtensions, properties: [], sessionType: sessionType)
        let opened = Opened()
        pair.clientEvents.answer = { [unowned pair] session, id in
            let socket = try! pair.socket()
            opened.value = socket
            try! session.attach(socket.channel, to: id)
        }
        pair.agentEvents.onTerminalEnded = { session in
            session.endTerminal(exitStatus: exitStatus, reason: reason)
        }
        try pair.settle()
        return (pair, opened)
    }

    @Test(
        "a shell: both terminals open at the start, keys and output flow, the size reaches the agent, the end brings the exit code"
    )
    func terminalSession() throws {
        for clientExtensions in [JumpgateExtensions.all, []] {
            let (pair, userTerminal) = try Self.programSession(
                "Standard_Stream",
                clientExtensions,
                exitStatus: 3,
                reason: "The shell exited with status 3."
            )
            #expect(pair.clientEvents.established?.isTerminal == true && pair.agentEvents.established?.mode == .basic)
            #expect(pair.agentEvents.requested == [StreamTable.basicStreamID])
            #expect(pair.clientEvents.requested == [StreamTable.basicStreamID])
            let user = try #require(userTerminal.value)
            let shell = try #require(pair.targets[StreamTable.basicStreamID])

            try shell.send(ByteBuffer(string: "$ "))
            try user.send(ByteBuffer(string: "echo hi\r"))
            pair.client.sendTerminalSize(TerminalSize(columns: 80, rows: 24))
            try pair.settle()
            try user.collect()
            try shell.collect()
            #expect(String(buffer: user.received) == "$ " && String(buffer: shell.received) == "echo hi\r")
            #expect(pair.agentEvents.sizes == [TerminalSize(columns: 80, rows: 24)])

            // The shell's last words, then its terminal closes: the exit code (to a Jumpgate client only),
            // and the agent's end once the client has everything.
            try shell.send(ByteBuffer(string: "logout\r\n"))
            shell.channel.close(promise: nil)
            try pair.settle()
            try user.collect()
            #expect(String(buffer: user.received) == "$ logout\r\n")
            #expect(pair.agentEvents.terminalEnds == 1)
            #expect(pair.clientEvents.exitCodes == (clientExtensions.contains(.exitCodes) ? [3] : []))
            #expect(pair.agentEvents.ended?.reason == "The shell exited with status 3.")
            #expect(pair.agentEvents.ended?.byPeer == true)
            #expect(pair.clientEvents.refused.isEmpty && pair.agentEvents.refused.isEmpty)
        }
    }

    @Test(
        "a non-interactive command: its output and its standard error (cut into payloads) arrive apart, then its exit code"
    )
    func nonInteractiveCommand() throws {
        for clientExtensions in [JumpgateExtensions.all, []] {
            let (pair, userOutput) = try Self.programSession(
                "NonInteractiveCommands",
                clientExtensions,
                exitStatus: 7,
                reason: "The command exited with status 7."
            )
            #expect(pair.clientEvents.established?.isTerminal == true)
            #expect(pair.clientEvents.established?.needsTerminal == false)
            let user = try #require(userOutput.value)
            let command = try #require(pair.targets[StreamTable.basicStreamID])

            // More standard error than one payload holds (it is cut), between two pieces of output.
            try command.send(ByteBuffer(string: "first\n"))
            try pair.settle()
            let errors = String(repeating: "e", count: 70_000) + "\n"
            pair.agent.sendStandardError(ByteBuffer(string: errors))
            #expect(!pair.agent.standardErrorWaits)
            try command.send(ByteBuffer(string: "second\n"))
            command.channel.close(promise: nil)
            try pair.settle()
            try user.collect()
            #expect(String(buffer: user.received) == "first\nsecond\n")
            #expect(pair.clientEvents.standardError == errors)
            #expect(pair.clientEvents.exitCodes == (clientExtensions.contains(.exitCodes) ? [7] : []))
            #expect(pair.agentEvents.ended?.byPeer == true)
            #expect(pair.clientEvents.refused.isEmpty && pair.agentEvents.refused.isEmpty)
        }
    }

    @Test("smux v2: a target that takes nothing stops the client at the stream's window, and all arrives later")
    func smuxV2Window() throws {
        let pair = try BackToBack()
        try pair.settle()
        let (local, id) = try pair.connect()
        try pair.settle()
        let target = try #require(pair.targets[id])
        target.channel.isWritable = false
        let total = 6 << 20
        let data = ByteBuffer.pattern(total, seed: 6)
        var offset = 0
        while offset < total {
            let piece = data.getSlice(at: offset, length: min(256 * 1024, total - offset))!
            try local.send(piece)
            offset += piece.readableBytes
            try pair.settle()
        }
        let window = Int(SmuxSession.Configuration(version: 2, role: .server).streamReceiveWindow)
        try target.collect()
        #expect(target.received.readableBytes <= window, "more than a window reached a target that is not writable")
        #expect(pair.client.isReadPaused(id), "the client keeps reading a connection the window has stopped")
        // The target drains: the window reopens and the rest follows, in order.
        target.channel.isWritable = true
        target.channel.pipeline.fireChannelWritabilityChanged()
        for _ in 0..<100 where target.received.readableBytes < total {
            try pair.settle()
            try target.collect()
            local.channel.read()
        }
        #expect(target.received == data)
    }

    @Test("smux v1 (the official plugin's mode) carries data both ways without windows")
    func smuxV1() throws {
        let pair = try BackToBack(agentExtensions: JumpgateExtensions.all.subtracting(.smuxV2))
        try pair.settle()
        #expect(pair.agentEvents.established?.mode == .mux(smuxVersion: 1, keepAlive: false))
        try Self.roundTrip(pair, bytes: 300_000)
    }

    @Test(
        "a new stream's SYN and window update go in one message; the agent's window goes ahead of its first data; gathered frames fill messages of at most 1 KiB"
    )
    func framesShareMessages() throws {
        let pair = try BackToBack()
        try pair.settle()
        func frames(in payload: ByteBuffer) throws -> [SmuxFrame] {
            var payload = payload
            var decoder = SmuxFrameDecoder(version: 2)
            var found: [SmuxFrame] = []
            while let frame = try decoder.decode(buffer: &payload) { found.append(frame) }
            #expect(payload.readableBytes == 0, "a payload ends with a whole frame")
            return found
        }
        var sent: [[SmuxFrame]] = []
        var agentSent: [[SmuxFrame]] = []
        func watch(_ side: BackToBack.Side, _ frame: ByteBuffer) -> [ByteBuffer] {
            if let message = try? SSMMessage(decoding: frame), message.payloadType == .output,
                let found = try? frames(in: message.payload)
            {
                if side == .client { sent.append(found) } else { agentSent.append(found) }
            }
            return [frame]
        }
        let (local, id) = try pair.connect()
        try pair.settle(watch)
        #expect(sent.map { $0.map(\.command) } == [[.syn, .upd]], "the client's messages: \(sent)")
        #expect(agentSent.isEmpty, "the agent sends no message of its own for a new stream: \(agentSent)")
        let target = try #require(pair.targets[id])
        try local.send(ByteBuffer.pattern(1000, seed: 9))
        try pair.settle()
        try target.collect()
        #expect(target.received == ByteBuffer.pattern(1000, seed: 9))

        // 200 window updates of 16 bytes at once: 64 to a message (1,024 bytes), in order, all delivered.
        let update = try #require(sent.first?.last)
        sent.removeAll()
        pair.client.perform(Array(repeating: .sendFrame(update), count: 200))
        try pair.settle(watch)
        #expect(sent.map(\.count) == [64, 64, 64, 8])
        #expect(sent.joined().allSatisfy { $0 == update })
        #expect(agentSent.isEmpty, "\(agentSent)")
        // The target's first bytes carry the stream's window to the client, ahead of them in their message.
        try target.send(ByteBuffer.pattern(1000, seed: 10))
        try pair.settle(watch)
        #expect(agentSent.map { $0.map(\.command) } == [[.upd, .psh]], "the agent's messages: \(agentSent)")
        #expect(agentSent.first?.first?.windowUpdate == .init(consumed: 1000, window: 2 << 20))
        try local.collect()
        #expect(local.received == ByteBuffer.pattern(1000, seed: 10))
    }

    @Test("each full 64 KiB read of a local or target connection goes as one message, not one and a 16-byte rest")
    func fullReadsAreOneMessageEach() throws {
        let pair = try BackToBack()
        try pair.settle()
        let (local, id) = try pair.connect()
        try pair.settle()
        let target = try #require(pair.targets[id])
        for seed in 0..<3 { try local.send(ByteBuffer.pattern(65_536, seed: UInt8(seed))) }
        for seed in 3..<6 { try target.send(ByteBuffer.pattern(65_536, seed: UInt8(seed))) }
        var payloads: [BackToBack.Side: [Int]] = [.client: [], .agent: []]
        try pair.settle { side, frame in
            if let message = try? SSMMessage(decoding: frame), message.payloadType == .output {
                payloads[side, default: []].append(message.payload.readableBytes)
            }
            return [frame]
        }
        try target.collect()
        try local.collect()
        func sent(_ seeds: Range<Int>) -> ByteBuffer {
            var all = ByteBuffer()
            for seed in seeds { all.writeImmutableBuffer(ByteBuffer.pattern(65_536, seed: UInt8(seed))) }
            return all
        }
        #expect(target.received == sent(0..<3))
        #expect(local.received == sent(3..<6))
        #expect(payloads[.client] == [65_552, 65_552, 65_552], "the client's payloads: \(payloads)")
        // The agent's messages stay full; its window update goes alone (16 bytes), once 64 KiB of the
        // client's data is consumed, since none of its full messages has room for it.
        #expect(payloads[.agent]?.filter { $0 != 16 } == [65_552, 65_552, 65_552], "the agent's payloads: \(payloads)")
        #expect(payloads[.agent]?.filter { $0 == 16 }.count == 1, "the agent's payloads: \(payloads)")
    }

    @Test("with an official peer (no extensions) the client sends 1 KiB payloads and the agent 64 KiB of bytes")
    func officialPeerPayloadSizes() throws {
        let pair = try BackToBack(clientExtensions: [], agentExtensions: [])
        try pair.settle()
        #expect(pair.agentEvents.established?.extensions.isEmpty == true)
        let (local, id) = try pair.connect()
        try pair.settle()
        let target = try #require(pair.targets[id])
        try local.send(ByteBuffer.pattern(300_000, seed: 1))
        try target.send(ByteBuffer.pattern(300_000, seed: 2))
        var largest: [BackToBack.Side: Int] = [.client: 0, .agent: 0]
        try pair.settle { side, frame in
            if let message = try? SSMMessage(decoding: frame), message.payloadType == .output {
                largest[side] = max(largest[side] ?? 0, message.payload.readableBytes)
            }
            return [frame]
        }
        try target.collect()
        try local.collect()
        #expect(target.received == ByteBuffer.pattern(300_000, seed: 1))
        #expect(local.received == ByteBuffer.pattern(300_000, seed: 2))
        #expect(largest[.client] == 1024, "the client's largest payload: \(largest)")
        // 64 KiB of bytes in two smux v1 frames of 32 KiB, their 8-byte headers on top.
        #expect(largest[.agent] == 64 * 1024 + 16, "the agent's largest payload: \(largest)")
    }

    @Test("resume: lost messages are resent, duplicates dropped, and the target sees each byte once in order")
    func resumeWithGapsAndDuplicates() throws {
        let pair = try BackToBack(resumable: true)
        try pair.settle()
        let (local, id) = try pair.connect()
        try pair.settle()
        let target = try #require(pair.targets[id])
        // Three messages from the client are lost with the old connection, and the agent's
        // acknowledgements of the ones before them too (so those come again, as duplicates).
        var lost = 0
        try local.send(.pattern(3 * 60_000, seed: 7))
        try pair.pump { side, frame in
            if side == .agent, SSMMessage.peekMessageType(frame) == .acknowledge { return [] }
            guard side == .client, SSMMessage.peekPayloadType(frame) == .output, lost < 3 else { return [frame] }
            lost += 1
            return lost == 1 ? [frame, frame] : []  // the first also arrives twice
        }
        try local.send(.pattern(100_000, seed: 8))
        try pair.pump { side, frame in side == .client ? [] : [frame] }  // the connection is gone
        try pair.reconnect(.client)
        // The gateway tells the agent to resend too (start_publication); the client resent on its own.
        let startPublication = SSMMessage(
            messageType: .startPublication,
            createdDate: 1,
            flags: SSMMessageFlags.acknowledge,
            payload: ByteBuffer()
        ).encoded()
        try pair.agentData.writeInbound(WebSocketMessage.binary(startPublication))
        try pair.settle()
        try target.collect()
        var expected = ByteBuffer.pattern(3 * 60_000, seed: 7)
        var more = ByteBuffer.pattern(100_000, seed: 8)
        expected.writeBuffer(&more)
        #expect(target.received == expected)
        #expect(pair.clientEvents.ended == nil && pair.agentEvents.ended == nil)
    }

    @Test("half-close: the client's EOF half-closes the target, whose answer still comes back")
    func halfClose() throws {
        let pair = try BackToBack()
        try pair.settle()
        let (local, id) = try pair.connect()
        try local.send(.pattern(10_000, seed: 9))
        local.sendEOF()
        try pair.settle()
        let target = try #require(pair.targets[id])
        try target.collect()
        #expect(target.received == .pattern(10_000, seed: 9))
        #expect(target.end.outputClosed, "the target's output was not half-closed")
        #expect(target.channel.isActive, "the target was closed instead of half-closed")
        try target.send(.pattern(20_000, seed: 10))
        target.sendEOF()
        try pair.settle()
        try local.collect()
        #expect(local.received == .pattern(20_000, seed: 10))
        #expect(local.end.outputClosed || !local.channel.isActive)
    }

    @Test("a stream the agent refuses fails on the client with the agent's reason, and its connection closes")
    func refusedStream() throws {
        let pair = try BackToBack()
        pair.agentEvents.answer = { session, id in session.refuse(id, reason: "10.0.0.9:5432 is not allowed") }
        try pair.settle()
        let (local, id) = try pair.connect()
        try pair.settle()
        #expect(pair.clientEvents.failed.map(\.id) == [id])
        #expect(pair.clientEvents.failed.first?.reason == "10.0.0.9:5432 is not allowed")
        #expect(!local.channel.isActive, "the refused connection stays open")
        // The session goes on: the next connection is served.
        pair.agentEvents.answer = BackToBack.attachAnswer(pair)
        try Self.roundTrip(pair, bytes: 1000)
    }
    @Test("early data for a target that closed as it was attached goes back to the client's window")
    func earlyDataOfAClosedTarget() throws {
        let pair = try BackToBack()
        pair.agentEvents.answer = { _, _ in }  // the target is still being dialled
        try pair.settle()
        let (local, id) = try pair.connect()
        // More than the agent's 2 MiB window: the client is held to it while the agent holds the early data.
        for _ in 0..<40 { try local.send(.pattern(65_536)) }
        try pair.settle()
        #expect(pair.client.table.blockedStreams.contains(id), "the window is spent")
        // The target's connection closed before the agent glued it: its early data is written nowhere.
        let target = try pair.socket()
        try target.channel.close().wait()
        pair.loop.run()  // the closed pipeline lets its handlers go
        #expect(throws: (any Error).self) { try pair.agent.attach(target.channel, to: id) }
        try pair.settle()
        // It was credited all the same: the client's waiting bytes went (and were dropped by the agent),
        // and not more than once (a peer sent past its window would end the session).
        #expect(pair.client.table.blockedStreams.isEmpty, "the client still waits for its window")
        #expect(pair.agentEvents.ended == nil && pair.clientEvents.ended == nil)
        #expect(pair.agentEvents.refused.isEmpty && pair.clientEvents.refused.isEmpty)
    }

    @Test("a target whose pipeline is gone before the agent takes it: the stream is refused, not left dialling")
    func attachPreparationFails() throws {
        struct PipelineGone: Error {}
        let pair = try BackToBack()
        pair.agentEvents.answer = { _, _ in }  // the target is still being dialled
        try pair.settle()
        let (local, id) = try pair.connect()
        try local.send(.pattern(1000))
        try pair.settle()
        let target = try pair.socket()
        #expect(throws: PipelineGone.self) {
            try pair.agent.attach(target.channel, to: id) { _ in throw PipelineGone() }
        }
        try pair.settle()
        #expect(pair.clientEvents.failed.map(\.id) == [id])
        #expect(!local.channel.isActive && !target.channel.isActive)
        #expect(pair.agentEvents.ended == nil && pair.clientEvents.ended == nil)
        // The session goes on: the next stream works.
        pair.agentEvents.answer = BackToBack.attachAnswer(pair)
        try Self.roundTrip(pair, bytes: 1000)
    }

    @Test("without connect-errors, a refusal fails its own stream only; a later half-close stays a half-close")
    func refusalWithoutReasonThenHalfClose() throws {
        let pair = try BackToBack(agentExtensions: JumpgateExtensions.all.subtracting(.connectErrors))
        var refuseNext = true
        pair.agentEvents.answer = { [unowned pair] session, id in
            if refuseNext {
                refuseNext = false
                session.refuse(id, reason: "nothing listens there")
            } else {
                BackToBack.attachAnswer(pair)(session, id)
            }
        }
        try pair.settle()
        let (refused, refusedID) = try pair.connect()
        try pair.settle()
        #expect(pair.clientEvents.failed.map(\.id) == [refusedID])
        #expect(pair.clientEvents.failed.first?.reason == nil, "an official-mode refusal carries no reason")
        #expect(!refused.channel.isActive)
        // The next stream works, and the target's EOF reaches the client as a half-close.
        let (local, id) = try pair.connect()
        try pair.settle()
        let target = try #require(pair.targets[id])
        try target.send(.pattern(3000, seed: 11))
        target.sendEOF()
        try pair.settle()
        try local.collect()
        #expect(local.received == .pattern(3000, seed: 11))
        #expect(local.end.outputClosed && local.channel.isActive, "a normal end was taken for a refusal")
        #expect(pair.clientEvents.failed.count == 1)
    }
}
