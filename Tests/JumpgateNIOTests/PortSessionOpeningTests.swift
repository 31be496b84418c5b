import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// A stream's SYN riding with the connection's first bytes (``StreamTable/open(into:dataWaiting:)``),
/// through both session handlers back to back (``BackToBack``): one message from the client instead of
/// two, and the agent dials, delivers and answers as before.
@Suite("Port sessions back to back: a stream's opening with its first bytes")
struct PortSessionOpeningTests {
    /// Pumps until quiet; returns the messages the client sent.
    static func clientMessages(_ pair: BackToBack) throws -> Int {
        var count = 0
        try pair.settle { side, frame in
            if side == .client { count += 1 }
            return [frame]
        }
        return count
    }

    @Test(
        "a connection that spoke first: one message carries its SYN and bytes; the agent dials, delivers and answers",
        arguments: [(false, false), (true, false), (false, true)]
    )
    func speaksFirst(speaksFirst: Bool, framed: Bool) throws {
        let pair = try BackToBack(framed: framed)
        try pair.settle()
        let (local, id) = try pair.connect(speaksFirst: speaksFirst || framed)
        let held = speaksFirst || framed
        // Nothing goes for the opening until the bytes are read (the read follows the accept at once).
        #expect(try Self.clientMessages(pair) == (held ? 0 : 1))
        #expect(pair.agentEvents.requested == (held ? [] : [id]))
        let request = ByteBuffer(string: "GET / HTTP/1.1\r\nHost: db\r\n\r\n")
        try local.send(request)
        #expect(try Self.clientMessages(pair) == 1)
        #expect(pair.agentEvents.requested == [id])
        let target = try #require(pair.targets[id])
        try target.collect()
        #expect(target.received == request)
        try target.send(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n"))
        try pair.settle()
        try local.collect()
        #expect(local.received == ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n"))
        #expect(pair.clientEvents.ended == nil && pair.agentEvents.ended == nil)
        #expect(pair.clientEvents.refused.isEmpty && pair.agentEvents.refused.isEmpty)
    }

    @Test(
        "a connection that ended before its bytes were read: its SYN and FIN go together; the agent dials and half-closes"
    )
    func endsFirst() throws {
        let pair = try BackToBack()
        try pair.settle()
        let (local, id) = try pair.connect(speaksFirst: true)
        local.sendEOF()
        #expect(try Self.clientMessages(pair) == 1)
        #expect(pair.agentEvents.requested == [id])
        let target = try #require(pair.targets[id])
        #expect(target.end.outputClosed, "the client's end reached the target as a half-close")
        // The target's answer still comes back on the open half.
        try target.send(ByteBuffer(string: "bye"))
        try pair.settle()
        try local.collect()
        #expect(local.received == ByteBuffer(string: "bye"))
    }
}
