import Foundation
import JumpgateClient
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import JumpgateAgent

/// An echo target that keeps its connections, so the test can close them from the target's side.
final class HoldingTarget: Sendable {
    let channels = NIOLockedValueBox<[any Channel]>([])
    /// Bytes each connection received, in the order they were accepted.
    let received = NIOLockedValueBox<[Int]>([])

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let channels: NIOLockedValueBox<[any Channel]>
        let received: NIOLockedValueBox<[Int]>
        var index = 0
        init(channels: NIOLockedValueBox<[any Channel]>, received: NIOLockedValueBox<[Int]>) {
            self.channels = channels
            self.received = received
        }

        func channelActive(context: ChannelHandlerContext) {
            let channel = context.channel
            self.index = self.channels.withLockedValue { channels in
                channels.append(channel)
                return channels.count - 1
            }
            self.received.withLockedValue { $0.append(0) }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let count = self.unwrapInboundIn(data).readableBytes
            let index = self.index
            self.received.withLockedValue { $0[index] += count }
            context.writeAndFlush(data, promise: nil)
        }

        /// The client's FIN: this side closes too, once every echo is written (as most servers do).
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case ChannelEvent.inputClosed = event {
                let channel = context.channel
                context.writeAndFlush(NIOAny(ByteBuffer())).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }

    func start() async throws -> any Channel {
        let (channels, received) = (self.channels, self.received)
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(channels: channels, received: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }
}

/// Every connection inside a port session, as the agent reports it: opened, refused by the allow-list,
/// closed with the bytes each way; kept by an agent that cannot reach the gateway, and by the gateway
/// across a restart.
@Suite("Connection records: what the agent reports reaches the audit trail", .serialized)
struct ConnectionRecordsTests {
    /// Polls (bounded, 20 s) until `condition` holds.
    static func eventually(_ what: @autoclosure () -> String, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<200 {
            if try await condition() { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        Issue.record("timed out waiting for \(what())")
    }

    static func records(_ lab: EndToEndTests.Lab, session: String) async throws -> [JSONValue] {
        let answer = try await lab.ssm.call("ListAuditEvents", ["SessionId": .string(session)], api: "JumpgateAdmin")
        return (answer["Events"]?.arrayValue ?? []).filter {
            $0["eventName"]?.stringValue?.hasPrefix("Connection") == true
        }
    }

    /// The lab's `SessionRefused` audit records once there is one (bounded wait), each checked against its
    /// session: under the session's owner, from the lab's agent, and the session itself ended as Failed.
    static func sessionRefusal(_ lab: EndToEndTests.Lab) async throws -> JSONValue {
        var events: [JSONValue] = []
        try await Self.eventually("a SessionRefused record; agent: \(lab.agent.standardError.suffix(1500))") {
            let answer = try await lab.ssm.call(
                "ListAuditEvents",
                ["EventName": "SessionRefused"],
                api: "JumpgateAdmin"
            )
            events = answer["Events"]?.arrayValue ?? []
            return !events.isEmpty
        }
        #expect(events.count == 1, "\(events.map { $0.serialized() })")
        let details = try #require(events.first?["serviceEventDetails"])
        #expect(details["instanceId"]?.stringValue == lab.instanceID)
        let sessionID = try #require(details["sessionId"]?.stringValue)
        let session = { (name: String) async throws -> JSONValue? in
            let answer = try await lab.ssm.call(
                "ListAuditEvents",
                ["SessionId": .string(sessionID), "EventName": .string(name)],
                api: "JumpgateAdmin"
            )
            return answer["Events"]?.arrayValue?.first
        }
        try await Self.eventually("the refused session's end") {
            try await session("SessionEnded")?["serviceEventDetails"]?["status"]?.stringValue == "Failed"
        }
        // Under the session's owner: whoever called StartSession.
        let owner = try #require(try await session("StartSession")?["userIdentity"]?["userName"]?.stringValue)
        #expect(!owner.isEmpty)
        #expect(events.first?["userIdentity"]?["userName"]?.stringValue == owner)
        return details
    }

    static func setAllowList(_ lab: EndToEndTests.Lab, _ allow: String, reloads: Int) async throws {
        let (status, output, errors) = try runJumpgate(
            ["agent", "allow-list", "--state-dir", lab.directory + "/agent", "--allow", allow]
        )
        #expect(status == 0 && output.contains("applied to the running agent"), "\(output) \(errors)")
        try await Self.eventually("the agent's reload") {
            lab.agent.standardError.components(separatedBy: "allow-list reloaded").count - 1 >= reloads
        }
    }

    /// A connection that sends `count` bytes, reads `readBack` of them back (all by default), then is reset
    /// (SO_LINGER 0) or closed.
    static func roundTrip(port: Int, count: Int, readBack: Int? = nil, reset: Bool) async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let done = loop.makePromise(of: ByteBuffer.self)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        Collector(expected: readBack ?? count, done: done, closeWhenDone: false)
                    )
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        if reset {
            // Linger on, 0 s: close() sends RST instead of FIN.
            let provider = try #require(channel as? any SocketOptionProvider)
            try await provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        channel.writeAndFlush(randomBuffer(count), promise: nil)
        let received = try await done.futureResult.get()
        #expect(received.readableBytes >= (readBack ?? count))
        try await channel.close()
    }

    @Test(
        "three connections in one session (one refused by the allow-list, one reset), one closed while the gateway is down"
    )
    func connectionRecords() async throws {
        let target = HoldingTarget()
        let server = try await target.start()
        defer { server.close(promise: nil) }
        let port = try #require(server.localAddress?.port)
        let lab = try await EndToEndTests.startLab(allow: ["127.0.0.1:\(port)"])
        var gateway = lab.gateway
        defer {
            lab.agent.stop()
            gateway.stop()
            try? FileManager.default.removeItem(atPath: lab.directory)
        }
        let (client, localPort, sessionID) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: port)
        defer { client.stop() }

        // 1: a clean exchange of 1,000 bytes each way.
        try await Self.roundTrip(port: localPort, count: 1000, reset: false)
        try await Self.eventually("the first close") {
            try await Self.records(lab, session: sessionID).contains {
                $0["eventName"]?.stringValue == "ConnectionClosed"
            }
        }
        // 2: the agent's operator narrows the allow-list: the next connection is refused, the session stays.
        try await Self.setAllowList(lab, "127.0.0.1:1", reloads: 1)
        #expect(try await bytesBeforeRefusal(port: localPort, bytes: randomBuffer(10)) == 0)
        try await Self.setAllowList(lab, "127.0.0.1:\(port)", reloads: 2)
        // 3: killed mid-transfer: 1 MiB sent, the client resets the connection once 64 KiB came back.
        try await Self.roundTrip(port: localPort, count: 1 << 20, readBack: 64 << 10, reset: true)
        try await Self.eventually(
            "three records of each (target connections open: \(target.channels.withLockedValue { $0.map(\.isActive) }), "
                + "received \(target.received.withLockedValue { $0 }); agent: \(lab.agent.standardError.suffix(1500)))"
        ) {
            let records = try await Self.records(lab, session: sessionID)
            return records.filter { $0["eventName"]?.stringValue == "ConnectionClosed" }.count == 2
                && records.contains { $0["eventName"]?.stringValue == "ConnectionRefused" }
        }
        // The killed connection's target side is closed too by then (the agent closed it).
        try await Self.eventually("the target to see the close") {
            target.channels.withLockedValue { $0.count == 2 && !$0[1].isActive }
        }
        // 4: a connection the target closes while the gateway is down: the agent keeps its record.
        let held = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: localPort).get()
        try await held.writeAndFlush(randomBuffer(300))
        try await Self.eventually("the fourth connection at the target") {
            target.channels.withLockedValue { $0.count } == 3
        }
        gateway.signal(SIGTERM)
        #expect(try gateway.waitForExit() == 0)
        try await Self.eventually("the agent to lose the gateway") {
            lab.agent.standardError.contains("control channel down")
        }
        // The target goes away at once (a reset): the agent's connection ends while it cannot report it.
        for channel in target.channels.withLockedValue({ $0 }) where channel.isActive {
            if let provider = channel as? any SocketOptionProvider {
                try await provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
            }
            channel.close(promise: nil)
        }
        let journal = lab.directory + "/agent/connections.journal"
        try await Self.eventually("the journalled close") {
            (try? String(contentsOfFile: journal, encoding: .utf8))?.contains("ConnectionClosed") == true
        }
        gateway = try GatewayRestartTests.restartGateway(lab, name: "gateway-after-close")
        try await Self.eventually("the record sent after the restart") {
            (try? await Self.records(lab, session: sessionID))?.filter {
                $0["eventName"]?.stringValue == "ConnectionClosed"
            }
            .count == 3
        }
        held.close(promise: nil)

        let records = try await Self.records(lab, session: sessionID)
        let opened = records.filter { $0["eventName"]?.stringValue == "ConnectionOpened" }
        let closed = records.filter { $0["eventName"]?.stringValue == "ConnectionClosed" }
        let refused = records.filter { $0["eventName"]?.stringValue == "ConnectionRefused" }
        #expect(opened.count == 3 && closed.count == 3 && refused.count == 1, "\(records.map { $0.serialized() })")
        let details = closed.compactMap { $0["serviceEventDetails"] }
        // What was sent each way, byte for byte: toward the target, what the target received; back, what
        // the agent read of its echo (the killed one: at least what the client had read when it reset).
        let atTarget = target.received.withLockedValue { $0 }
        try #require(atTarget.count == 3 && details.count == 3)
        #expect(details.map { $0["bytesToTarget"]?.int64Value ?? -1 } == atTarget.map(Int64.init), "\(atTarget)")
        #expect(
            atTarget[0] == 1000 && atTarget[2] == 300 && atTarget[1] >= 64 << 10 && atTarget[1] <= 1 << 20,
            "\(atTarget)"
        )
        let back = details.map { $0["bytesFromTarget"]?.int64Value ?? -1 }
        try #require(back.count == 3 && atTarget.count == 3)
        #expect(back[0] == 1000 && back[2] == 300, "\(back)")
        #expect(back[1] >= 64 << 10 && back[1] <= Int64(atTarget[1]), "\(back) \(atTarget)")
        #expect(details.allSatisfy { $0["address"]?.stringValue == "127.0.0.1:\(port)" })
        #expect(details.allSatisfy { $0["destination"]?.stringValue == "127.0.0.1:\(port)" })
        #expect(
            details[2]["reason"]?.stringValue == "connection error: reset by the target",
            "\(details[2].serialized())"
        )
        #expect(refused.first?["serviceEventDetails"]?["refusedBy"]?.stringValue == "allow-list")
        #expect(refused.first?["serviceEventDetails"]?["reason"]?.stringValue?.contains("allow-list") == true)
        // Recorded under the session's owner, against its target.
        #expect(records.allSatisfy { $0["userIdentity"]?["userName"]?.stringValue == "jumpgate-admin" })
        #expect(records.allSatisfy { $0["serviceEventDetails"]?["instanceId"]?.stringValue == lab.instanceID })
        // The journal is empty once the gateway has everything.
        try await Self.eventually("the journal to empty") {
            (try? String(contentsOfFile: journal, encoding: .utf8))?.isEmpty ?? true
        }
    }

    @Test("connections opened one after another for 3 s: the agent gathers their records, about one upload a second")
    func uploadsAreGathered() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, sessionID) = try EndToEndTests().startSession(
                lab,
                host: "127.0.0.1",
                port: echoPort
            )
            defer { client.stop() }
            // Bounded in count and time: until 3 s have passed or 2,000 connections were made.
            let start = ContinuousClock.now
            var connections = 0
            while connections < 2000, ContinuousClock.now - start < .seconds(3) {
                try await Self.roundTrip(port: localPort, count: 16, reset: false)
                connections += 1
            }
            try await Self.eventually("the records of all \(connections) connections") {
                let answer = try await lab.ssm.call(
                    "ListAuditEvents",
                    ["SessionId": .string(sessionID), "MaxResults": 10000],
                    api: "JumpgateAdmin"
                )
                let closed = (answer["Events"]?.arrayValue ?? []).filter {
                    $0["eventName"]?.stringValue == "ConnectionClosed"
                }
                return closed.count == connections
            }
            let seconds = Int((ContinuousClock.now - start).components.seconds) + 1
            let metrics = try await GatewayLimitsTests.metrics(lab)
            let uploads = Int(GatewayLimitsTests.sample(metrics, "jumpgate_connection_record_uploads_total") ?? 0)
            print("connection records: \(uploads) uploads for \(connections) connections in \(seconds) s")
            // One gathered upload a second, one when the agent connected, and one more for each full batch
            // (two records per connection, at most 500 a request); never one per few connections, as when
            // each upload went on while records kept coming (404 uploads for 1,150 connections in 4 s).
            let fullBatches = 2 * connections / AgentRunner.recordsPerRequest
            #expect(
                uploads >= 1 && uploads <= seconds + 2 + fullBatches,
                "\(uploads) uploads for \(connections) connections in \(seconds) s"
            )
        }
    }
}
