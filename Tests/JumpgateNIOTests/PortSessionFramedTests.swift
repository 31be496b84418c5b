import JumpgateTestUtilities
import JumpgateWire
import NIOCore
import NIOEmbedded
import Testing

@testable import JumpgateNIO

/// The client's and the agent's session handlers back to back over ``SSMStreamFramer`` (the relay-blind
/// path's framing, docs/BLIND-RELAY.md): the same sessions as over WebSocket, with the bytes between them
/// cut at seeded random places.
@Suite("Port sessions back to back on a plain byte stream")
struct PortSessionFramedTests {
    static func pair(
        seed: UInt64,
        clientExtensions: JumpgateExtensions = .all,
        agentExtensions: JumpgateExtensions = .all,
        resumable: Bool = false
    ) throws -> BackToBack {
        let pair = try BackToBack(
            clientExtensions: clientExtensions,
            agentExtensions: agentExtensions,
            resumable: resumable,
            framed: true
        )
        pair.cuts = HostileFrames.Generator(state: seed | 1)
        return pair
    }

    @Test("every combination of offered extensions negotiates and carries data, however the bytes are cut")
    func everyExtensionCombination() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        print("PortSessionFramedTests.everyExtensionCombination: seed \(seed)")
        for offered in (0..<(1 << 7)).map({ JumpgateExtensions(rawValue: $0) }) {
            let pair = try Self.pair(seed: seed &+ UInt64(offered.rawValue), agentExtensions: offered)
            try pair.settle()
            let client = try #require(pair.clientEvents.established, "client not established with \(offered)")
            #expect(client.extensions == offered && pair.agentEvents.established?.extensions == offered)
            try PortSessionBackToBackTests.roundTrip(pair, bytes: offered.contains(.largePayloads) ? 200_000 : 20_000)
            #expect(pair.clientEvents.refused.isEmpty && pair.agentEvents.refused.isEmpty, "seed \(seed)")
        }
    }

    @Test("basic mode (the official plugin's, still whole on this framing)")
    func basicMode() throws {
        let pair = try BackToBack(properties: BackToBack.standardStream, framed: true)
        try pair.settle()
        #expect(pair.clientEvents.established?.mode == .basic)
        try PortSessionBackToBackTests.roundTrip(pair, bytes: 50_000)
    }

    @Test("both connections replaced after messages were lost: each side resends, the target sees each byte once")
    func resumeOnNewConnections() throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        print("PortSessionFramedTests.resumeOnNewConnections: seed \(seed)")
        let pair = try Self.pair(seed: seed, resumable: true)
        try pair.settle()
        let (local, id) = try pair.connect()
        try pair.settle()
        let target = try #require(pair.targets[id])
        try local.send(.pattern(3 * 60_000, seed: 7))
        var lost = 0
        try pair.pump { side, frame in
            guard side == .client, SSMMessage.peekPayloadType(frame) == .output, lost < 2 else { return [frame] }
            lost += 1
            return []
        }
        // The pair broke: a relay-blind path has no gateway to ask for a resend, so both sides come back
        // on new connections, each with a new framer, and each resends what the other has not acknowledged.
        try pair.reconnect(.client)
        try pair.reconnect(.agent)
        try pair.settle()
        try target.collect()
        #expect(target.received == .pattern(3 * 60_000, seed: 7), "seed \(seed)")
    }

    @Test("garbage on the stream ends a session that cannot resume, with the framer's reason")
    func garbageEndsTheSession() throws {
        let pair = try BackToBack(framed: true)
        try pair.settle()
        try pair.agentData.writeInbound(ByteBuffer(repeating: 0x5A, count: 300))
        let ended = try #require(pair.agentEvents.ended)
        #expect(ended.reason.contains("HeaderLength"), "\(ended.reason)")
        #expect(!pair.agentData.isActive)
    }
}
