import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// The agent's (and the client's) data channel hands ``PortSession`` payloads borrowed from TLS's read
/// buffer (`WebSocketHandler.Configuration.portSession`). NIOSSL writes its next read into that same buffer,
/// so a slice of it alive then makes it copy the whole buffer: more work than the copy borrowing saves.
/// These tests run the real handlers (WebSocket, session) over EmbeddedChannels: what a read carries goes
/// to a target with nothing queued as slices of the read (payloads of 16 KiB and more; smaller ones are
/// copied), and every path that keeps bytes past the read (a slow target, a smux frame cut between
/// messages, a message out of order, early data for a target still being dialled) keeps copies, checked by
/// writing to the read buffer afterwards as NIOSSL does.
@Suite("Port sessions: payloads borrowed from TLS's read buffer, never kept")
struct PortSessionBorrowedPayloadTests {
    /// A session with one stream open to a target; from here the agent's data channel reads bytes through a
    /// borrowing WebSocket handler, as `connectWebSocket` builds it.
    static func pair() throws -> (BackToBack, FakeSocket, FakeSocket) {
        let pair = try BackToBack()
        try pair.settle()
        let (local, id) = try pair.connect()
        try local.send(ByteBuffer(string: "open"))
        try pair.settle()
        let target = try #require(pair.targets[id])
        try target.collect()
        target.received.clear()
        try pair.agentData.pipeline.syncOperations.addHandler(
            WebSocketHandler(role: .client, configuration: .portSession),
            position: .first
        )
        return (pair, local, target)
    }

    /// The client's messages for the agent so far, as the gateway would pass them on.
    static func clientMessages(_ pair: BackToBack) throws -> [ByteBuffer] {
        var messages: [ByteBuffer] = []
        while let message = try pair.clientData.readOutbound(as: WebSocketMessage.self) {
            if case .binary(let frame) = message { messages.append(frame) }
        }
        return messages
    }

    /// One TLS read: `messages` as the gateway's unmasked frames, in a buffer of its own.
    static func tlsRead(_ messages: [ByteBuffer]) -> ByteBuffer {
        var read = ByteBufferAllocator().buffer(capacity: 256 * 1024)
        for message in messages { read.writeWebSocketFrame(opcode: .binary, payload: message, maskingKey: nil) }
        return read
    }

    /// What the session wrote to `target`: the bytes, and how many writes were slices of `read`.
    static func drain(_ target: FakeSocket, lentFrom read: ByteBuffer) throws -> (lent: Int, copied: Int) {
        let range = read.withVeryUnsafeBytes {
            UInt(bitPattern: $0.baseAddress!)..<UInt(bitPattern: $0.baseAddress! + $0.count)
        }
        var (lent, copied) = (0, 0)
        while var bytes = try target.channel.readOutbound(as: ByteBuffer.self) {
            guard bytes.readableBytes > 0 else { continue }
            let start = bytes.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress!) }
            if range.contains(start) { lent += 1 } else { copied += 1 }
            target.received.writeBuffer(&bytes)
        }
        return (lent, copied)
    }

    /// The agent's own frames (acknowledgements, window updates): bytes now, none of them the read's.
    static func discardAgentOutput(_ pair: BackToBack) throws {
        while try pair.agentData.readOutbound(as: ByteBuffer.self) != nil {}
    }

    /// One read on the agent's data channel; what it wrote to `target`, counted as ``drain(_:lentFrom:)`` does.
    @discardableResult
    static func deliver(
        _ read: ByteBuffer,
        _ pair: BackToBack,
        to target: FakeSocket
    ) throws -> (lent: Int, copied: Int) {
        try pair.agentData.writeInbound(read)
        try Self.discardAgentOutput(pair)
        return try Self.drain(target, lentFrom: read)
    }

    @Test(
        "a target with nothing queued gets the read's large payloads as they are, small ones copied; once written, TLS's buffer is unshared",
        arguments: [60_000, 1000]
    )
    func lentToAnIdleTarget(size: Int) throws {
        let (pair, local, target) = try Self.pair()
        let data = ByteBuffer.pattern(size, seed: 4)
        try local.send(data)
        var read = Self.tlsRead(try Self.clientMessages(pair))
        let (lent, copied) = try Self.deliver(read, pair, to: target)
        #expect(target.received == data)
        if size >= PortSession.smallestLent {
            #expect(lent > 0 && copied == 0, "lent \(lent), copied \(copied)")
        } else {
            #expect(lent == 0 && copied > 0, "lent \(lent), copied \(copied)")
        }
        let reused = read.reusedInPlace()
        #expect(reused, "a slice of TLS's read buffer outlived the read")
    }

    @Test("in one read, a small payload (copied) then a large one for the same idle target: the large one is lent")
    func smallThenLargeInOneRead() throws {
        let (pair, local, target) = try Self.pair()
        let small = ByteBuffer.pattern(1000, seed: 10)
        let large = ByteBuffer.pattern(50_000, seed: 11)  // two PSH frames, 32,768 and 17,232 bytes
        try local.send(small)
        var messages = try Self.clientMessages(pair)
        try local.send(large)
        messages += try Self.clientMessages(pair)
        // What the read itself queued (the small copy) does not count as the target being slow.
        var read = Self.tlsRead(messages)
        let (lent, copied) = try Self.deliver(read, pair, to: target)
        var both = small
        both.writeImmutableBuffer(large)
        #expect(target.received == both)
        #expect(lent == 2 && copied == 1, "lent \(lent), copied \(copied)")
        let reused = read.reusedInPlace()
        #expect(reused)
    }

    /// How a target is slow: its socket's buffer is full (not writable), or it still has bytes queued.
    enum Slowness: CaseIterable { case notWritable, bytesQueued }

    @Test(
        "a target that is not writable or still has bytes queued gets copies: TLS's buffer is unshared while they wait",
        arguments: Slowness.allCases
    )
    func copiedForASlowTarget(_ slowness: Slowness) throws {
        let (pair, local, target) = try Self.pair()
        let data = ByteBuffer.pattern(60_000, seed: 5)
        try local.send(data)
        var expected = ByteBuffer()
        switch slowness {
        case .notWritable:
            target.channel.isWritable = false  // its socket's buffer is full
        case .bytesQueued:
            expected = ByteBuffer(string: "queued")  // written earlier, not on the socket yet
            target.channel.write(expected, promise: nil)
        }
        expected.writeImmutableBuffer(data)
        var read = Self.tlsRead(try Self.clientMessages(pair))
        try pair.agentData.writeInbound(read)
        try Self.discardAgentOutput(pair)
        let reused = read.reusedInPlace()  // before the target takes anything
        #expect(reused, "bytes waiting for a slow target are slices of TLS's read buffer")
        target.channel.flush()
        let (lent, copied) = try Self.drain(target, lentFrom: read)
        #expect(target.received == expected)
        #expect(lent == 0 && copied > 0, "lent \(lent), copied \(copied)")
    }

    @Test("a smux frame cut between two messages: whole frames lent, the cut one copied, every byte intact")
    func frameCutBetweenMessages() throws {
        let (pair, local, target) = try Self.pair()
        // One message carrying two PSH frames (32 KiB and the rest), re-sent as two messages cut inside
        // the second frame, as the official plugin's messages are cut.
        let data = ByteBuffer.pattern(50_000, seed: 9)
        try local.send(data)
        let messages = try Self.clientMessages(pair)
        try #require(messages.count == 1)
        let message = try SSMMessage(decoding: messages[0])
        let total = message.payload.readableBytes
        let cutAt = total - 5000
        func part(_ offset: Int, _ length: Int, sequence: Int64) -> ByteBuffer {
            SSMMessage(
                messageType: message.messageType,
                createdDate: message.createdDate,
                sequenceNumber: sequence,
                flags: message.flags,
                payloadDigest: message.payloadDigest == .zero ? .zero : nil,
                payloadType: message.payloadType,
                payload: message.payload.getSlice(at: message.payload.readerIndex + offset, length: length)!
            ).encoded()
        }
        var first = Self.tlsRead([part(0, cutAt, sequence: message.sequenceNumber)])
        let (lent, copied) = try Self.deliver(first, pair, to: target)
        #expect(lent == 1 && copied == 0, "lent \(lent), copied \(copied)")
        let firstReused = first.reusedInPlace()
        #expect(firstReused, "the cut frame's start is a slice of TLS's read buffer")

        var second = Self.tlsRead([part(cutAt, total - cutAt, sequence: message.sequenceNumber + 1)])
        try Self.deliver(second, pair, to: target)
        #expect(target.received == data)
        let secondReused = second.reusedInPlace()
        #expect(secondReused)
    }

    @Test("a message ahead of a gap is kept as a copy; the gap's message then delivers both in order")
    func outOfOrderKeptAsCopy() throws {
        let (pair, local, target) = try Self.pair()
        // Large enough to be lent when in order (``PortSession/smallestLent``).
        let first = ByteBuffer.pattern(20_000, seed: 6)
        let second = ByteBuffer.pattern(20_000, seed: 7)
        try local.send(first)
        let firstMessages = try Self.clientMessages(pair)
        try local.send(second)
        let secondMessages = try Self.clientMessages(pair)
        #expect(firstMessages.count == 1 && secondMessages.count == 1)

        var ahead = Self.tlsRead(secondMessages)
        #expect(try Self.deliver(ahead, pair, to: target) == (0, 0))
        let aheadReused = ahead.reusedInPlace()
        #expect(aheadReused, "the message held for the gap is a slice of TLS's read buffer")

        var gap = Self.tlsRead(firstMessages)
        try Self.deliver(gap, pair, to: target)
        var both = first
        both.writeImmutableBuffer(second)
        #expect(target.received == both)
        let gapReused = gap.reusedInPlace()
        #expect(gapReused)
    }

    @Test("early data for a target still being dialled is kept as a copy and written once it is attached")
    func earlyDataKeptAsCopy() throws {
        let (pair, _, _) = try Self.pair()
        pair.agentEvents.answer = { _, _ in }  // the dial takes a while
        let local = try pair.socket()
        let id = try pair.client.openStream(for: local.channel)
        let data = ByteBuffer.pattern(20_000, seed: 8)
        try local.send(data)
        var read = Self.tlsRead(try Self.clientMessages(pair))
        try pair.agentData.writeInbound(read)
        try Self.discardAgentOutput(pair)
        #expect(pair.agentEvents.requested.last == id)
        let reused = read.reusedInPlace()
        #expect(reused, "early data is a slice of TLS's read buffer")

        let target = try pair.socket()
        try pair.agent.attach(target.channel, to: id)
        try target.collect()
        #expect(target.received == data)
    }
}
