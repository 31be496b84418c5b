import Foundation
import JumpgateClient
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// An echo target that keeps its connections, so the test can close them from the target's side.
final class HoldingTarget: Sendable {
    let channels = NIOLockedValueBox<[any Channel]>([])

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let channels: NIOLockedValueBox<[any Channel]>
        init(channels: NIOLockedValueBox<[any Channel]>) { self.channels = channels }

        func channelActive(context: ChannelHandlerContext) {
            let channel = context.channel
            self.channels.withLockedValue { $0.append(channel) }
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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
        let channels = self.channels
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(channels: channels))
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
    static func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<200 {
            if try await condition() { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        Issue.record("timed out waiting for \(what)")
    }

    static func records(_ lab: EndToEndTests.Lab, session: String) async throws -> [JSONValue] {
        let answer = try await lab.ssm.call("ListAuditEvents", ["SessionId": .string(session)], api: "JumpgateAdmin")
        return (answer["Events"]?.arrayValue ?? []).filter {
            $0["eventName"]?.stringValue?.hasPrefix("Connection") == true
        }
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

    /// A connection that sends `count` bytes, reads them back, then is reset (SO_LINGER 0) or closed.
    static func roundTrip(port: Int, count: Int, reset: Bool) async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let done = loop.makePromise(of: ByteBuffer.self)
        let channel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HeldCollector(expected: count, done: done))
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
        #expect(received.readableBytes == count)
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
        // 3: 50,000 bytes each way, then the client resets the connection.
        try await Self.roundTrip(port: localPort, count: 50_000, reset: true)
        try await Self.eventually("three records of each") {
            let records = try await Self.records(lab, session: sessionID)
            return records.filter { $0["eventName"]?.stringValue == "ConnectionClosed" }.count == 2
                && records.contains { $0["eventName"]?.stringValue == "ConnectionRefused" }
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
        // What was sent each way, byte for byte (the fourth: 300 sent, 300 echoed).
        #expect(details.map { $0["bytesToTarget"]?.int64Value ?? -1 } == [1000, 50_000, 300])
        #expect(details.map { $0["bytesFromTarget"]?.int64Value ?? -1 } == [1000, 50_000, 300])
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
}

/// Collects `expected` bytes, then completes (without closing: the test closes).
final class HeldCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var received = ByteBuffer()
    let expected: Int
    let done: EventLoopPromise<ByteBuffer>

    init(expected: Int, done: EventLoopPromise<ByteBuffer>) {
        self.expected = expected
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = self.unwrapInboundIn(data)
        self.received.writeBuffer(&buffer)
        if self.received.readableBytes >= self.expected { self.done.succeed(self.received) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.done.succeed(self.received)
    }
}
