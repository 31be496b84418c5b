import Foundation
import JumpgateClient
import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import Testing

/// An attacker on the gateway's port: raw TCP or TLS connections from 127.0.0.2 and up (the legitimate
/// client stays on 127.0.0.1), bounded in count and time. Each test proves the bound and that the
/// legitimate client keeps working meanwhile.
@Suite("Gateway under attack: connections, deadlines, floods", .serialized)
struct GatewayAttackTests {
    /// Records what a raw connection read and whether it closed.
    final class Watcher: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received = NIOLockedValueBox(0)
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let count = self.unwrapInboundIn(data).readableBytes
            self.received.withLockedValue { $0 += count }
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// A connection to the gateway from `source`, with TLS (trusting the lab's CA) or without.
    static func connect(
        _ lab: EndToEndTests.Lab,
        from source: String,
        tls: Bool,
        reading: Bool = true
    ) async throws -> any Channel {
        let context = try JumpgateTLS.clientContext(caFile: lab.caFile)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .channelOption(.autoRead, value: reading || tls)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if tls {
                        try channel.pipeline.syncOperations.addHandler(
                            try NIOSSLClientHandler(context: context, serverHostname: nil)
                        )
                    }
                    try channel.pipeline.syncOperations.addHandler(Watcher())
                }
            }
            .connect(host: "127.0.0.1", port: lab.gatewayPort)
            .get()
        if tls {
            // The handshake is done once a write can go through (NIOSSL buffers writes until then).
            try await channel.writeAndFlush(ByteBuffer()).get()
            // Reading was on for the handshake; a connection that never reads stops now.
            if !reading { try await channel.setOption(ChannelOptions.autoRead, value: false).get() }
        }
        return channel
    }

    /// Whether `channel` closes within `seconds` (polled, bounded).
    static func closes(_ channel: any Channel, within seconds: Double) async -> Bool {
        await BackpressureTests.eventually(seconds: seconds) { !channel.isActive }
    }

    static func residentMegabytes(_ lab: EndToEndTests.Lab) -> Int {
        GatewayLimitsTests.residentMegabytes(pid: lab.gateway.process.processIdentifier)
    }

    /// The legitimate client: a signed API call from 127.0.0.1 answers.
    static func legitimateCallWorks(_ lab: EndToEndTests.Lab) async -> Bool {
        let answer = try? await lab.ssm.call("DescribeInstanceInformation", [:])
        return answer?["InstanceInformationList"]?.arrayValue?.count == 1
    }

    static func upgradeRequest(path: String) -> ByteBuffer {
        ByteBuffer(
            string: "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }

    @Test("a refused WebSocket upgrade ends the connection: zeros streamed after it are never buffered")
    func refusedUpgradeCloses() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            let before = Self.residentMegabytes(lab)
            var peak = before
            // Two refused upgrades, and a CONNECT (which NIO's decoder treats as an upgrade too).
            let requests = [
                ("/no-such-path", Self.upgradeRequest(path: "/no-such-path")),
                ("/v1/data-channel/nosuch", Self.upgradeRequest(path: "/v1/data-channel/nosuch")),
                ("CONNECT", ByteBuffer(string: "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")),
            ]
            for (path, request) in requests {
                let attacker = try await Self.connect(lab, from: "127.0.0.2", tls: true)
                defer { attacker.close(promise: nil) }
                attacker.writeAndFlush(request, promise: nil)
                // Stream zeros for up to 5 s (64 KiB writes, at most 2,000): the gateway must hang up.
                let zeros = ByteBuffer(repeating: 0, count: 64 << 10)
                let started = Date()
                var writes = 0
                while attacker.isActive, Date().timeIntervalSince(started) < 5, writes < 2000 {
                    _ = try? await attacker.writeAndFlush(zeros).get()
                    writes += 1
                    if writes % 50 == 0 { peak = max(peak, Self.residentMegabytes(lab)) }
                }
                #expect(await Self.closes(attacker, within: 2), "\(path): the gateway kept the connection")
                print("GatewayAttackTests.refusedUpgradeCloses: \(path): \(writes) writes before the close")
                // The legitimate client still works, through the API and through its tunnel.
                #expect(await Self.legitimateCallWorks(lab))
                #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 65536, step: 1) == 2)
            }
            print("GatewayAttackTests.refusedUpgradeCloses: gateway RSS \(before) MiB, peak \(peak) MiB")
            #expect(!MemoryBound.applies || peak - before < 64, "the gateway grew by \(peak - before) MiB")
        }
    }

    /// Floods a data channel with masked 125-byte pings for `seconds` (at most 400,000) without ever
    /// reading; returns how many were sent and the gateway's peak RSS meanwhile.
    static func pingFlood(
        _ lab: EndToEndTests.Lab,
        streamPath: String,
        opening: ByteBuffer?,
        seconds: Double
    ) async throws -> (pings: Int, peak: Int) {
        let attacker = try await Self.connect(lab, from: "127.0.0.2", tls: true, reading: false)
        defer { attacker.close(promise: nil) }
        try await attacker.writeAndFlush(Self.upgradeRequest(path: streamPath)).get()
        let key = WebSocketMaskingKey(0x12, 0x34, 0x56, 0x78)
        if let opening {
            var frame = ByteBuffer()
            frame.writeWebSocketFrame(opcode: .text, payload: opening, maskingKey: key)
            try await attacker.writeAndFlush(frame).get()
        }
        var batch = ByteBuffer()
        let payload = ByteBuffer(repeating: 0x70, count: 125)
        for _ in 0..<1000 { batch.writeWebSocketFrame(opcode: .ping, payload: payload, maskingKey: key) }
        var pings = 0
        var peak = 0
        let started = Date()
        while attacker.isActive, Date().timeIntervalSince(started) < seconds, pings < 400_000 {
            guard (try? await attacker.writeAndFlush(batch).get()) != nil else { break }
            pings += 1000
            if pings % 20_000 == 0 { peak = max(peak, Self.residentMegabytes(lab)) }
        }
        return (pings, max(peak, Self.residentMegabytes(lab)))
    }

    @Test("pings that are never read: pongs do not pile up, and three floods leave no more memory than one")
    func unreadPings() async throws {
        try await EndToEndTests.withLab { lab, echoPort in
            let (client, localPort, _) = try EndToEndTests().startSession(lab, host: "127.0.0.1", port: echoPort)
            defer { client.stop() }
            // A session of the attacker's own, whose StreamUrl and token it floods before and after opening.
            let request: JSONValue = [
                "Target": .string(lab.instanceID), "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
                "Parameters": ["host": ["127.0.0.1"], "portNumber": [.string("\(echoPort)")]],
            ]
            let before = Self.residentMegabytes(lab)
            var afterEach: [Int] = []
            for round in 0..<3 {
                let grant = try SessionGrant(json: try await lab.ssm.call("StartSession", request))
                let (_, _, path) = try #require(HTTPSEndpoint.parse(url: grant.streamURL))
                let opening =
                    round == 0
                    ? nil
                    : ByteBuffer(
                        string: OpenDataChannelInput(tokenValue: grant.tokenValue, clientID: "attacker").json
                            .serialized()
                    )
                let (pings, peak) = try await Self.pingFlood(lab, streamPath: path, opening: opening, seconds: 4)
                // The legitimate client works during and after.
                #expect(try await parallelEchoes(port: localPort, count: 2, baseSize: 65536, step: 1) == 2)
                #expect(await Self.legitimateCallWorks(lab))
                _ = try await lab.ssm.call("TerminateSession", ["SessionId": .string(grant.sessionID)])
                try await Task.sleep(nanoseconds: 500_000_000)  // the attacker's socket closed; let the gateway settle
                let after = Self.residentMegabytes(lab)
                afterEach.append(after)
                print(
                    "GatewayAttackTests.unreadPings: round \(round): \(pings) pings, gateway RSS \(before) -> peak \(peak) -> \(after) MiB"
                )
                #expect(pings >= 10_000, "the flood did not get going (\(pings) pings)")
                #expect(
                    !MemoryBound.applies || peak - before < 64,
                    "round \(round): the gateway grew by \(peak - before) MiB during the flood"
                )
            }
            #expect(
                !MemoryBound.applies || afterEach[2] <= afterEach[0] + 16,
                "memory after three floods: \(afterEach) MiB"
            )
        }
    }

    @Test(
        "slow and silent connections are closed by the deadlines; a legitimate client on 127.0.0.1 keeps working"
    )
    func deadlines() async throws {
        let flags = ["--tls-handshake-timeout", "2s", "--header-timeout", "2s", "--keepalive-timeout", "3s"]
        try await EndToEndTests.withLab(gatewayArguments: flags) { lab, _ in
            let started = Date()
            // Raw TCP that never starts TLS, and TLS that never sends a request.
            var raw: [any Channel] = []
            for _ in 0..<40 { raw.append(try await Self.connect(lab, from: "127.0.0.2", tls: false)) }
            var silent: [any Channel] = []
            for _ in 0..<40 { silent.append(try await Self.connect(lab, from: "127.0.0.3", tls: true)) }
            // Slow loris: one header byte every 500 ms.
            var opening: [any Channel] = []
            for _ in 0..<20 { opening.append(try await Self.connect(lab, from: "127.0.0.4", tls: true)) }
            let loris = opening
            let header =
                Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ".utf8) + Array(repeating: UInt8(0x61), count: 100)
            let drip = Task {
                for byte in header {
                    for channel in loris where channel.isActive {
                        channel.writeAndFlush(ByteBuffer(bytes: [byte]), promise: nil)
                    }
                    try await Task.sleep(nanoseconds: 500_000_000)
                    if loris.allSatisfy({ !$0.isActive }) { return }
                }
            }
            defer { drip.cancel() }
            // A body announced as 1 MB that sends 2 bytes, and a chunk of 2^64 - 1 bytes.
            let slowBody = try await Self.connect(lab, from: "127.0.0.5", tls: true)
            slowBody.writeAndFlush(
                ByteBuffer(string: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nab"),
                promise: nil
            )
            let hugeChunk = try await Self.connect(lab, from: "127.0.0.5", tls: true)
            hugeChunk.writeAndFlush(
                ByteBuffer(
                    string: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\nab"
                ),
                promise: nil
            )
            #expect(await Self.legitimateCallWorks(lab), "the legitimate client works during the attack")

            for channel in raw { #expect(await Self.closes(channel, within: 5), "raw TCP kept past the TLS deadline") }
            print("GatewayAttackTests.deadlines: raw TCP closed after \(Date().timeIntervalSince(started)) s")
            for channel in silent { #expect(await Self.closes(channel, within: 5), "silent TLS kept past keep-alive") }
            for channel in loris {
                #expect(await Self.closes(channel, within: 5), "slow loris kept past the header deadline")
            }
            // The body deadline: 10 s of grace, then 1 KiB/s.
            #expect(await Self.closes(slowBody, within: 15), "a 2-byte body of 1 MB kept past the body deadline")
            #expect(await Self.closes(hugeChunk, within: 15), "a 2^64 chunk kept")
            print("GatewayAttackTests.deadlines: all closed after \(Date().timeIntervalSince(started)) s")
            #expect(await Self.legitimateCallWorks(lab))

            let text = try await GatewayLimitsTests.metrics(lab)
            let slowBodies = GatewayLimitsTests.sample(
                text,
                "jumpgate_connections_timed_out_total{reason=\"slow_body\"}"
            )
            #expect((slowBodies ?? 0) >= 1, "the slow body was not counted")
            let handshake = GatewayLimitsTests.sample(
                text,
                "jumpgate_connections_timed_out_total{reason=\"tls_handshake\"}"
            )
            let idle = GatewayLimitsTests.sample(
                text,
                "jumpgate_connections_timed_out_total{reason=\"keepalive_idle\"}"
            )
            let headerTimeouts = GatewayLimitsTests.sample(
                text,
                "jumpgate_connections_timed_out_total{reason=\"request_header\"}"
            )
            #expect((handshake ?? 0) >= 40 && (idle ?? 0) >= 40 && (headerTimeouts ?? 0) >= 20, "\(text)")
        }
    }

    @Test("connection caps: past the per-source and total limits a connection is closed at accept, and counted")
    func connectionCaps() async throws {
        // A long TLS deadline, so that only the caps close these raw connections.
        let flags = ["--max-connections-per-source", "10", "--max-connections", "45", "--tls-handshake-timeout", "60s"]
        try await EndToEndTests.withLab(gatewayArguments: flags) { lab, _ in
            var held: [any Channel] = []
            defer { for channel in held { channel.close(promise: nil) } }
            for _ in 0..<15 { held.append(try await Self.connect(lab, from: "127.0.0.2", tls: false)) }
            // Refused ones are closed at once: wait until 5 are, then make sure no more follow.
            #expect(await BackpressureTests.eventually(seconds: 2) { held.filter { !$0.isActive }.count >= 5 })
            try await Task.sleep(nanoseconds: 500_000_000)
            #expect(
                held.filter { !$0.isActive }.count == 5,
                "5 of 15 connections from one source are over its cap of 10"
            )
            #expect(await Self.legitimateCallWorks(lab), "another source is not affected")
            // Fill the total from other sources: the ones past 45 are refused, whatever their source.
            for source in ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
                for _ in 0..<10 { held.append(try await Self.connect(lab, from: source, tls: false)) }
            }
            let late = try await Self.connect(lab, from: "127.0.0.7", tls: false)
            #expect(await Self.closes(late, within: 1), "a connection past the total cap")
            for channel in held { channel.close(promise: nil) }
            held = []
            #expect(await BackpressureTests.eventually(seconds: 5) { await Self.legitimateCallWorks(lab) })
            let after = try await GatewayLimitsTests.metrics(lab)
            let perSource = GatewayLimitsTests.sample(
                after,
                "jumpgate_connections_refused_total{reason=\"per_source_limit\"}"
            )
            let total = GatewayLimitsTests.sample(after, "jumpgate_connections_refused_total{reason=\"total_limit\"}")
            #expect(perSource == 5, "\(after)")
            #expect((total ?? 0) >= 1, "\(after)")
        }
    }

    @Test(
        "failed sign-ins and registrations are throttled per source and id, never a correct one; the log sums them up"
    )
    func throttlingAndRefusalLog() async throws {
        try await EndToEndTests.withLab { lab, _ in
            var attacker = try GatewayAPITests.endpoint(lab)
            attacker.sourceAddress = "127.0.0.2"
            let good = try GatewayAPITests.adminCredentials(lab)
            let wrongSecret = "WrongSecretWrongSecretWrongSecretWrong01"
            let bad = AWSCredentials(accessKeyID: good.accessKeyID, secretAccessKey: wrongSecret)
            let body = Array(#"{"State":"Active"}"#.utf8)
            var answers: [String] = []
            for _ in 0..<30 {
                let (_, type) = try await GatewayAPITests.call(
                    attacker,
                    operation: "DescribeSessions",
                    body: body,
                    credentials: bad
                )
                answers.append(type)
            }
            #expect(answers.prefix(10).allSatisfy { $0 == "InvalidSignatureException" }, "\(answers)")
            #expect(answers.dropFirst(10).allSatisfy { $0 == "ThrottlingException" }, "\(answers)")
            // Counted per key id: the same key from another address is throttled too ...
            var elsewhere = try GatewayAPITests.endpoint(lab)
            elsewhere.sourceAddress = "127.0.0.4"
            let (_, sameKey) = try await GatewayAPITests.call(
                elsewhere,
                operation: "DescribeSessions",
                body: body,
                credentials: bad
            )
            #expect(sameKey == "ThrottlingException", "the key id's failures are counted wherever they come from")
            // ... and per source: another made-up key from the attacker's address is throttled at once.
            let (_, sameSource) = try await GatewayAPITests.call(
                attacker,
                operation: "DescribeSessions",
                body: body,
                credentials: AWSCredentials(accessKeyID: "AKJGOTHERKEY", secretAccessKey: wrongSecret)
            )
            #expect(sameSource == "ThrottlingException", "the source's failures are counted whatever key it claims")
            // The correct secret for that very key, from that very address, is never refused.
            let (status, type) = try await GatewayAPITests.call(
                attacker,
                operation: "DescribeSessions",
                body: body,
                credentials: good
            )
            #expect(status == 200 && type.isEmpty, "a correct signature was refused: \(type)")
            #expect(await Self.legitimateCallWorks(lab))

            // Registration: 30 wrong codes for one activation from 127.0.0.3, then correct codes from there.
            let first = try await lab.ssm.call(
                "CreateActivation",
                ["IamRole": "SSMServiceRole", "RegistrationLimit": 2]
            )
            let second = try await lab.ssm.call("CreateActivation", ["IamRole": "SSMServiceRole"])
            var registrar = try GatewayAPITests.endpoint(lab)
            registrar.sourceAddress = "127.0.0.3"
            func register(_ id: String, _ code: String) async throws -> (Int, String) {
                let request: JSONValue = [
                    "ActivationId": .string(id), "ActivationCode": .string(code), "Name": "attack-test",
                    "PlatformType": "Linux", "AgentVersion": "3.3.1802.0",
                ]
                let response = try await registrar.request(
                    method: "POST",
                    path: "/",
                    headers: [
                        ("Content-Type", "application/x-amz-json-1.1"),
                        ("X-Amz-Target", "AmazonSSM.RegisterManagedInstance"),
                    ],
                    body: ByteBuffer(bytes: request.serializedBytes())
                )
                let json = try? JSONValue(parsing: response.body.readableBytesView)
                return (response.status, json?["__type"]?.stringValue ?? "")
            }
            let firstID = try #require(first["ActivationId"]?.stringValue)
            var registrations: [String] = []
            for attempt in 0..<30 {
                registrations.append(try await register(firstID, "WrongCode\(attempt)WrongCode").1)
            }
            #expect(registrations.prefix(10).allSatisfy { $0 == "InvalidActivation" }, "\(registrations)")
            #expect(registrations.dropFirst(10).allSatisfy { $0 == "ThrottlingException" }, "\(registrations)")
            for activation in [first, second] {
                let (status, type) = try await register(
                    try #require(activation["ActivationId"]?.stringValue),
                    try #require(activation["ActivationCode"]?.stringValue)
                )
                #expect(status == 200, "a correct activation code was refused: \(type)")
            }

            // Each refusal counted under its type: 10 bad signatures, 10 wrong codes, and the 42 throttled
            // (20 + 1 + 1 sign-ins, 20 registrations).
            let text = try await GatewayLimitsTests.metrics(lab)
            func refusals(_ type: String) -> Int {
                GatewayLimitsTests.counter(text, "jumpgate_refusals_total", type: type)
            }
            #expect(refusals("InvalidSignatureException") == 10, "\(text)")
            #expect(refusals("InvalidActivation") == 10, "\(text)")
            #expect(refusals("ThrottlingException") == 42, "\(text)")

            // The log: one summary line per source (written at the latest when the gateway stops), with
            // the source and the key id, and never a secret or a code.
            lab.gateway.signal(SIGTERM)
            _ = try lab.gateway.waitForExit()
            let log = lab.gateway.standardError
            let lines = log.split(separator: "\n").filter { $0.contains("refused requests") }
            let fromAttacker = lines.filter { $0.contains("source=127.0.0.2") }
            #expect(fromAttacker.count == 1, "\(lines)")
            #expect(fromAttacker.first?.contains("count=31") == true, "\(lines)")
            #expect(fromAttacker.first?.contains(good.accessKeyID) == true, "\(lines)")
            let fromRegistrar = lines.filter { $0.contains("source=127.0.0.3") }
            #expect(fromRegistrar.first?.contains("count=30") == true && fromRegistrar.first?.contains(firstID) == true)
            #expect(!log.contains(wrongSecret) && !log.contains("WrongCode"), "a secret reached the log")
            #expect(!log.contains("request refused"), "refusals are summed up, not logged one by one")
        }
    }
}
