import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// What the local connections (client) or targets (agent) of one session read in one event-loop wake-up
/// goes to the data channel in one flush, at the wake-up's end (``PortSession/flushAfterLoopTick()``):
/// EmbeddedEventLoop's `run()` plays the end of the wake-up, where NIO runs the tasks queued during its I/O.
@Suite("Port sessions back to back: one flush of the data channel per event-loop wake-up")
struct PortSessionFlushTests {
    /// Counts the flushes that reach the head of a data channel's pipeline.
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = Any
        var flushes = 0

        func flush(context: ChannelHandlerContext) {
            self.flushes += 1
            context.flush()
        }
    }

    /// Whether nothing was flushed out of `data` (WebSocket messages, or framed bytes).
    static func nothingOut(_ data: EmbeddedChannel, framed: Bool) throws -> Bool {
        framed
            ? try data.readOutbound(as: ByteBuffer.self) == nil
            : try data.readOutbound(as: WebSocketMessage.self) == nil
    }

    /// A pair with two streams open and settled, and a flush counter on `side`'s data channel.
    static func twoStreams(
        framed: Bool,
        counting side: BackToBack.Side
    ) throws -> (BackToBack, [FakeSocket], [FakeSocket], FlushCounter) {
        let pair = try BackToBack(framed: framed)
        try pair.settle()
        let (first, firstID) = try pair.connect()
        let (second, secondID) = try pair.connect()
        try pair.settle()
        let targets = [try #require(pair.targets[firstID]), try #require(pair.targets[secondID])]
        let counter = FlushCounter()
        let data = side == .client ? pair.clientData : pair.agentData
        try data.pipeline.syncOperations.addHandler(counter, position: .first)
        return (pair, [first, second], targets, counter)
    }

    @Test(
        "two connections read in one wake-up: their messages leave in one flush, at the wake-up's end",
        arguments: [BackToBack.Side.client, .agent],
        [false, true]
    )
    func oneFlushPerWakeUp(side: BackToBack.Side, framed: Bool) throws {
        let (pair, locals, targets, counter) = try Self.twoStreams(framed: framed, counting: side)
        let (readers, writers) = side == .client ? (locals, targets) : (targets, locals)
        let data = side == .client ? pair.clientData : pair.agentData
        let payloads = [ByteBuffer.pattern(700, seed: 1), ByteBuffer.pattern(900, seed: 2)]
        // One wake-up: both sockets read, then the loop's tasks.
        for (socket, payload) in zip(readers, payloads) { try socket.channel.writeInbound(payload) }
        #expect(counter.flushes == 0, "a flush went out before the wake-up's other sockets were read")
        #expect(try Self.nothingOut(data, framed: framed), "a message left before the wake-up's end")
        pair.loop.run()
        #expect(counter.flushes == 1)
        try pair.pump()
        for (socket, payload) in zip(writers, payloads) {
            try socket.collect()
            #expect(socket.received == payload)
        }
    }

    @Test(
        "a session that ends in the wake-up that read a connection flushes its message before the close",
        arguments: [false, true]
    )
    func endedInTheSameWakeUp(framed: Bool) throws {
        let (pair, locals, _, counter) = try Self.twoStreams(framed: framed, counting: .client)
        try locals[0].channel.writeInbound(ByteBuffer.pattern(500, seed: 5))
        #expect(counter.flushes == 0)
        pair.client.shutdown(reason: "test: ended in the same wake-up")
        #expect(counter.flushes == 1, "the wake-up's message was not flushed before the close")
        #expect(try !Self.nothingOut(pair.clientData, framed: framed))
        pair.loop.run()  // the queued flush finds the session ended and does nothing
        #expect(counter.flushes == 1)
    }

    @Test("one connection's read leaves at its wake-up's end, not held for a later one")
    func aLoneReadIsNotHeld() throws {
        let (pair, locals, targets, counter) = try Self.twoStreams(framed: false, counting: .client)
        let payload = ByteBuffer.pattern(300, seed: 3)
        try locals[0].send(payload)  // the read, then the wake-up's end
        #expect(counter.flushes == 1)
        try pair.pump()
        try targets[0].collect()
        #expect(targets[0].received == payload)
        // The next wake-up flushes again.
        try locals[1].send(payload)
        #expect(counter.flushes == 2)
    }
}
