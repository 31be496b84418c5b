import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// A due cumulative acknowledgement rides ahead of the next message the session handler sends
/// (``SessionStateMachine/SendResult``), through both session handlers back to back: in a request-reply
/// exchange no acknowledgement crosses alone, which would cost the gateway and the peer a wake-up each.
@Suite("Port sessions back to back: acknowledgements ride with replies")
struct PortSessionAcknowledgementTests {
    @Test(
        "request and reply, with pauses: no acknowledgement crosses alone while they go on; in a pause at most one per side",
        arguments: [false, true]
    )
    func ridesWithReplies(framed: Bool) throws {
        let pair = try BackToBack(framed: framed)
        try pair.settle()
        let (local, id) = try pair.connect()
        try pair.settle()
        pair.loop.advanceTime(by: .seconds(1))
        try pair.settle()
        let target = try #require(pair.targets[id])
        var acknowledgements = 0
        var alone = 0
        var aloneInPauses: [BackToBack.Side: Int] = [:]
        /// Pumps what one step sent; counts acknowledgements, and those with no other message of their side.
        func pumpStep(inPause: Bool = false) throws {
            var seen: [(BackToBack.Side, MessageType?)] = []
            try pair.pump { side, frame in
                seen.append((side, SSMMessage.peekMessageType(frame)))
                return [frame]
            }
            for (side, type) in seen where type == .acknowledge {
                acknowledgements += 1
                guard !seen.contains(where: { $0.0 == side && $0.1 != .acknowledge }) else { continue }
                if inPause { aloneInPauses[side, default: 0] += 1 } else { alone += 1 }
            }
        }
        /// Lets time pass as an event loop would between two reads: timers already due fire.
        func tick() throws {
            pair.loop.advanceTime(by: .microseconds(50))
            try pumpStep()
        }
        let pauses: Set = [30, 60, 61]
        for round in 0..<100 {
            if pauses.contains(round) {
                pair.loop.advanceTime(by: .seconds(1))
                try pumpStep(inPause: true)
            }
            let query = ByteBuffer(string: "SELECT \(round)")
            try local.send(query)
            try pumpStep()
            try tick()
            target.received.clear()
            try target.collect()
            #expect(target.received == query)
            let answer = ByteBuffer(string: "row \(round)")
            try target.send(answer)
            try pumpStep()
            try tick()
            local.received.clear()
            try local.collect()
            #expect(local.received == answer)
        }
        #expect(alone == 0, "an acknowledgement went alone while the exchange went on")
        #expect(aloneInPauses.values.allSatisfy { $0 <= pauses.count })
        // 100 deliveries each way; half of the negotiated 32 makes one ride every 16, and one after each pause.
        #expect(acknowledgements >= 2 * (100 / 16))
        #expect(pair.client.machine.reliability.unacknowledgedCount <= 16)
        #expect(pair.agent.machine.reliability.unacknowledgedCount <= 16)
        #expect(pair.clientEvents.refused.isEmpty && pair.agentEvents.refused.isEmpty)
    }
}
