import JumpgateWire
import NIOCore
import Testing

/// The relay-blind path's routing (docs/BLIND-RELAY.md): the pairing line a connection opens with, and
/// the gateway's table of offered pairings. Every refusal has its case.
@Suite struct PairingTests {
    static let token = String(repeating: "a", count: 21) + "-_" + String(repeating: "Z9", count: 10)

    @Test("a line round-trips for both roles, and what follows it stays in the buffer")
    func roundTrip() throws {
        for role in PairingLine.Role.allCases {
            var buffer = PairingLine(role: role, token: Self.token).encoded()
            buffer.writeString("\u{16}\u{03}\u{01}")
            #expect(try PairingLine.parse(&buffer) == PairingLine(role: role, token: Self.token))
            #expect(buffer.readableBytes == 3)
        }
        #expect(PairingLine.canStart(with: UInt8(ascii: "J")) && !PairingLine.canStart(with: 0x16))
    }

    @Test("a line cut at every byte waits for the rest, then parses")
    func dripFed() throws {
        let bytes = Array(PairingLine(role: .agent, token: Self.token).encoded().readableBytesView)
        for cut in 0..<bytes.count {
            var buffer = ByteBuffer(bytes: bytes[..<cut])
            #expect(try PairingLine.parse(&buffer) == nil, "cut at \(cut)")
            #expect(buffer.readableBytes == cut)
        }
    }

    @Test(
        "refusals: not the protocol, another version, an unknown role, a malformed token, no newline in time",
        arguments: [
            ("GET / HTTP/1.1\r\n", PairingLine.Refusal.unknownProtocol),
            ("JGPAIR/2 client \(PairingTests.token)\n", .unknownProtocol),
            ("JGX", .unknownProtocol),
            ("JGPAIR/1 gateway \(PairingTests.token)\n", .unknownRole),
            ("JGPAIR/1 client short\n", .malformed),
            ("JGPAIR/1 client \(PairingTests.token.dropLast())!\n", .malformed),
            ("JGPAIR/1 client \(PairingTests.token) extra\n", .malformed),
            ("JGPAIR/1  client \(PairingTests.token)\n", .malformed),
            ("JGPAIR/1 client\n", .malformed),
            ("JGPAIR/1 " + String(repeating: "x", count: 200), .tooLong),
            ("JGPAIR/1 " + String(repeating: "x", count: 130) + "\n", .tooLong),
        ]
    )
    func refusals(line: String, refusal: PairingLine.Refusal) {
        var buffer = ByteBuffer(string: line)
        #expect(throws: refusal) { try PairingLine.parse(&buffer) }
    }

    // MARK: the table

    typealias Table = PairingTable<Int>
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    static func offered() -> Table {
        var table = Table()
        #expect(
            table.offer(sessionID: "s-1", clientTokenHash: "c1", agentTokenHash: "a1", deadline: start + .seconds(5))
                == nil
        )
        return table
    }

    @Test("either side first: the first waits, the second is paired with it, and the offer is over")
    func pairsEitherOrder() {
        for first in PairingLine.Role.allCases {
            var table = Self.offered()
            let hash = { (role: PairingLine.Role) in role == .client ? "c1" : "a1" }
            #expect(
                table.arrived(tokenHash: hash(first), role: first, connection: 1, now: Self.start)
                    == .wait(sessionID: "s-1")
            )
            #expect(
                table.arrived(tokenHash: hash(first.other), role: first.other, connection: 2, now: Self.start)
                    == .paired(sessionID: "s-1", partner: 1)
            )
            #expect(table.count == 0 && table.nextDeadline == nil)
        }
    }

    @Test("refused: an unknown token, a used one, the other side's, a late one; each token works once")
    func refusesEachWay() {
        var table = Self.offered()
        #expect(
            table.arrived(tokenHash: "nope", role: .client, connection: 1, now: Self.start) == .refused(.unknownToken)
        )
        // The agent's token presented as the client: refused, and used up.
        #expect(table.arrived(tokenHash: "a1", role: .client, connection: 2, now: Self.start) == .refused(.wrongRole))
        #expect(table.arrived(tokenHash: "a1", role: .agent, connection: 3, now: Self.start) == .refused(.unknownToken))
        // The client's, late.
        #expect(
            table.arrived(tokenHash: "c1", role: .client, connection: 4, now: Self.start + .seconds(6))
                == .refused(.expired)
        )
        #expect(
            table.arrived(tokenHash: "c1", role: .client, connection: 5, now: Self.start) == .refused(.unknownToken)
        )
    }

    @Test("a waiting side that leaves keeps its token used; its partner is then refused at once, not left waiting")
    func departedSide() {
        for (first, second) in [(PairingLine.Role.client, PairingLine.Role.agent), (.agent, .client)] {
            var table = Self.offered()
            let hash: (PairingLine.Role) -> String = { $0 == .client ? "c1" : "a1" }
            #expect(
                table.arrived(tokenHash: hash(first), role: first, connection: 1, now: Self.start)
                    == .wait(sessionID: "s-1")
            )
            // Only the waiting connection counts, and only for its own session.
            let stranger = table.departed(9, sessionID: "s-1")
            let otherSession = table.departed(1, sessionID: "s-2")
            let waiting = table.departed(1, sessionID: "s-1")
            let again = table.departed(1, sessionID: "s-1")
            #expect(!stranger && !otherSession && waiting && !again, "only the waiting side, once")
            #expect(
                table.arrived(tokenHash: hash(first), role: first, connection: 2, now: Self.start)
                    == .refused(.unknownToken)
            )
            #expect(
                table.arrived(tokenHash: hash(second), role: second, connection: 3, now: Self.start)
                    == .refused(.partnerLeft)
            )
            #expect(table.count == 0, "the offer ended with the refusal")
            #expect(table.expire(now: Self.start + .seconds(6)).isEmpty)
        }
    }

    @Test("which sessions have a side waiting, by role")
    func sessionsWaiting() {
        var table = Self.offered()
        _ = table.offer(
            sessionID: "s-2",
            clientTokenHash: "c2",
            agentTokenHash: "a2",
            deadline: Self.start + .seconds(5)
        )
        #expect(table.sessionsWaiting(.agent).isEmpty && table.sessionsWaiting(.client).isEmpty)
        _ = table.arrived(tokenHash: "a1", role: .agent, connection: 1, now: Self.start)
        _ = table.arrived(tokenHash: "c2", role: .client, connection: 2, now: Self.start)
        #expect(table.sessionsWaiting(.agent) == ["s-1"] && table.sessionsWaiting(.client) == ["s-2"])
        _ = table.arrived(tokenHash: "c1", role: .client, connection: 3, now: Self.start)
        table.departed(2, sessionID: "s-2")
        #expect(table.sessionsWaiting(.agent).isEmpty && table.sessionsWaiting(.client).isEmpty, "paired, and left")
    }

    @Test("a partner that left does not beat a wrong role or an expired offer")
    func departedSideOrder() {
        var table = Self.offered()
        _ = table.arrived(tokenHash: "c1", role: .client, connection: 1, now: Self.start)
        table.departed(1, sessionID: "s-1")
        #expect(table.arrived(tokenHash: "a1", role: .client, connection: 2, now: Self.start) == .refused(.wrongRole))

        var late = Self.offered()
        _ = late.arrived(tokenHash: "c1", role: .client, connection: 1, now: Self.start)
        late.departed(1, sessionID: "s-1")
        #expect(
            late.arrived(tokenHash: "a1", role: .agent, connection: 2, now: Self.start + .seconds(6))
                == .refused(.expired)
        )
    }

    @Test("expiry ends only offers past their deadline and names the side waiting in each")
    func expiry() {
        var table = Self.offered()
        _ = table.offer(
            sessionID: "s-2",
            clientTokenHash: "c2",
            agentTokenHash: "a2",
            deadline: Self.start + .seconds(9)
        )
        _ = table.arrived(tokenHash: "a1", role: .agent, connection: 7, now: Self.start)
        #expect(table.nextDeadline == Self.start + .seconds(5))
        #expect(table.expire(now: Self.start + .seconds(5)).isEmpty, "an offer ended at its deadline, not after")
        #expect(table.expire(now: Self.start + .seconds(6)) == [.init(sessionID: "s-1", waiting: 7)])
        #expect(
            table.arrived(tokenHash: "c1", role: .client, connection: 8, now: Self.start) == .refused(.unknownToken)
        )
        #expect(table.nextDeadline == Self.start + .seconds(9) && table.count == 1)
    }

    @Test("a new offer for a session replaces the old: its tokens die and its waiting side is handed back")
    func reOffer() {
        var table = Self.offered()
        _ = table.arrived(tokenHash: "c1", role: .client, connection: 1, now: Self.start)
        #expect(
            table.offer(
                sessionID: "s-1",
                clientTokenHash: "c9",
                agentTokenHash: "a9",
                deadline: Self.start + .seconds(5)
            ) == 1
        )
        #expect(table.arrived(tokenHash: "a1", role: .agent, connection: 2, now: Self.start) == .refused(.unknownToken))
        #expect(table.arrived(tokenHash: "a9", role: .agent, connection: 3, now: Self.start) == .wait(sessionID: "s-1"))
        #expect(table.withdraw(sessionID: "s-1") == 3)
        #expect(
            table.arrived(tokenHash: "c9", role: .client, connection: 4, now: Self.start) == .refused(.unknownToken)
        )
    }

    static func reoffer(
        relayOn: Bool = true,
        sessionOpen: Bool = true,
        portSession: Bool = true,
        partnerOnWebSocket: Bool = false,
        halfKept: Bool = false,
        agentReachable: Bool = true,
        certificateKnown: Bool = true
    ) -> BlindReoffer.Decision {
        BlindReoffer.decide(
            relayOn: relayOn,
            sessionOpen: sessionOpen,
            portSession: portSession,
            partnerOnWebSocket: partnerOnWebSocket,
            halfKept: halfKept,
            agentReachable: agentReachable,
            certificateKnown: certificateKnown
        )
    }

    @Test("after a break: the first side to ask gets a new offer, the second collects its kept half")
    func reofferOrder() {
        #expect(Self.reoffer() == .offer)
        #expect(Self.reoffer(halfKept: true) == .collect)
        // A kept half is collected even when the gateway has no certificate of its own (it is in the half),
        // and by the client whatever the agent's control channel does (the agent asked: it is there).
        #expect(Self.reoffer(halfKept: true, agentReachable: false, certificateKnown: false) == .collect)
    }

    @Test(
        "after a break, declined: the relay off, the session over, not a port session, the partner back on the WebSocket path, the agent unreachable, no certificate",
        arguments: BlindReoffer.Reason.allCases
    )
    func reofferDeclined(reason: BlindReoffer.Reason) {
        let decision = Self.reoffer(
            relayOn: reason != .relayOff,
            sessionOpen: reason != .sessionEnded,
            portSession: reason != .notPort,
            partnerOnWebSocket: reason == .partnerOnWebSocket,
            agentReachable: reason != .agentUnreachable,
            certificateKnown: reason != .noCertificate
        )
        #expect(decision == .decline(reason))
        #expect(!reason.description.isEmpty)
        // Each of these wins even over a kept half (a pairing would wait for nobody).
        if reason != .noCertificate && reason != .agentUnreachable {
            #expect(
                Self.reoffer(
                    relayOn: reason != .relayOff,
                    sessionOpen: reason != .sessionEnded,
                    portSession: reason != .notPort,
                    partnerOnWebSocket: reason == .partnerOnWebSocket,
                    halfKept: true
                ) == .decline(reason)
            )
        }
    }
}
