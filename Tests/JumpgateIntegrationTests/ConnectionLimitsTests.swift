import Logging
import NIOCore
import NIOPosix
import Testing

@testable import JumpgateGateway

/// The connection deadlines and admission as pure logic (time passed in).
@Suite("Connection limits: deadlines and admission")
struct ConnectionLimitsTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static func at(_ seconds: Double) -> NIODeadline { Self.start + .nanoseconds(Int64(seconds * 1e9)) }

    @Test("TLS handshake, then keep-alive idle, then a header deadline that arriving bytes do not extend")
    func handshakeIdleHeader() {
        var deadlines = HTTPConnectionDeadlines(limits: ConnectionLimits(), acceptedAt: Self.start)
        let r1 = deadlines.expired(now: Self.at(9.9))
        #expect(r1 == nil)
        let r2 = deadlines.expired(now: Self.at(10))
        #expect(r2 == .tlsHandshake)
        deadlines.tlsHandshakeCompleted(now: Self.at(1))
        let r3 = deadlines.expired(now: Self.at(60.9))
        #expect(r3 == nil)
        let r4 = deadlines.expired(now: Self.at(61))
        #expect(r4 == .keepAliveIdle)
        deadlines.bytesArrived(1, now: Self.at(5))
        for second in 6..<15 { deadlines.bytesArrived(1, now: Self.at(Double(second))) }
        let r5 = deadlines.expired(now: Self.at(14.9))
        #expect(r5 == nil)
        let r6 = deadlines.expired(now: Self.at(15))
        #expect(r6 == .requestHeader, "one deadline from the first byte")
    }

    @Test("a body must keep up the minimum rate; bytes sent early buy at most the grace period's silence")
    func bodyRate() {
        var limits = ConnectionLimits()
        limits.minimumBodyRate = 1000
        var deadlines = HTTPConnectionDeadlines(limits: limits, acceptedAt: Self.start)
        deadlines.tlsHandshakeCompleted(now: Self.start)
        deadlines.bytesArrived(100, now: Self.start)
        deadlines.headerCompleted(now: Self.start)
        let r7 = deadlines.expired(now: Self.at(9.5))
        #expect(r7 == nil)
        let r8 = deadlines.expired(now: Self.at(10.5))
        #expect(r8 == .slowBody, "2 bytes of a large body: closed after ~10 s")

        var steady = HTTPConnectionDeadlines(limits: limits, acceptedAt: Self.start)
        steady.headerCompleted(now: Self.start)
        for second in 1...60 {
            steady.bytesArrived(1000, now: Self.at(Double(second)))
            let r9 = steady.expired(now: Self.at(Double(second)))
            #expect(r9 == nil)
        }

        var frontLoaded = HTTPConnectionDeadlines(limits: limits, acceptedAt: Self.start)
        frontLoaded.headerCompleted(now: Self.start)
        frontLoaded.bytesArrived(1 << 20, now: Self.at(1))
        let r10 = frontLoaded.expired(now: Self.at(10))
        #expect(r10 == nil)
        let r11 = frontLoaded.expired(now: Self.at(11.5))
        #expect(r11 == .slowBody, "1 MiB up front buys no 17 minutes")
    }

    @Test("pipelined requests: not idle while an answer is owed; an answer unwritten for the idle time closes")
    func pipelining() {
        var deadlines = HTTPConnectionDeadlines(limits: ConnectionLimits(), acceptedAt: Self.start)
        deadlines.tlsHandshakeCompleted(now: Self.start)
        deadlines.bytesArrived(10, now: Self.at(1))
        deadlines.headerCompleted(now: Self.at(1))
        deadlines.requestCompleted(now: Self.at(1))
        deadlines.bytesArrived(10, now: Self.at(1))
        deadlines.headerCompleted(now: Self.at(1))
        deadlines.requestCompleted(now: Self.at(1))
        deadlines.responseSent(now: Self.at(2))
        let r12 = deadlines.expired(now: Self.at(55))
        #expect(r12 == nil, "the second answer is still owed")
        let r13 = deadlines.expired(now: Self.at(62))
        #expect(r13 == .keepAliveIdle, "an answer nobody reads for 60 s")
        deadlines.responseSent(now: Self.at(3))
        var idle = deadlines
        let r14 = idle.expired(now: Self.at(62))
        #expect(r14 == nil)
        let r15 = idle.expired(now: Self.at(63))
        #expect(r15 == .keepAliveIdle)
    }

    @Test("admission per source and in all; a release frees the slot")
    func admission() {
        var admission = ConnectionAdmission(perSource: 2, total: 3)
        #expect(admission.admit("a") == nil)
        #expect(admission.admit("a") == nil)
        #expect(admission.admit("a") == .perSourceLimit)
        #expect(admission.admit("b") == nil)
        #expect(admission.admit("c") == .totalLimit)
        admission.release("a")
        #expect(admission.admit("c") == nil)
        #expect(admission.open == 3 && admission.count(from: "a") == 1)
        admission.release("unknown")
        #expect(admission.open == 3)
    }

    @Test("a graceful stop closes every admitted connection, waits for them, and admits none after")
    func closeAll() async throws {
        // Real connections on 127.0.0.1 (their close completes on their event loop, as in the gateway).
        let group = MultiThreadedEventLoopGroup.singleton
        let listener = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        defer { listener.close(promise: nil) }
        func connect() async throws -> any Channel {
            try await ClientBootstrap(group: group).connect(to: listener.localAddress!).get()
        }
        let connections = GatewayConnections(limits: ConnectionLimits(), logger: Logger(label: "test"))
        let (first, second) = (try await connect(), try await connect())
        #expect(connections.admit(first) && connections.admit(second))
        #expect(connections.openConnections == 2)
        #expect(await connections.closeAll(within: .seconds(3)) == 0)
        #expect(!first.isActive && !second.isActive)
        #expect(connections.openConnections == 0)
        // One accepted just before the listener closed and set up after the snapshot: refused, not left open.
        let late = try await connect()
        defer { late.close(promise: nil) }
        #expect(!connections.admit(late))
        #expect(connections.openConnections == 0)
    }

    @Test("the failure throttle: per key, a minute, bounded table")
    func throttle() {
        var throttle = FailureThrottle(limit: 2, windowSeconds: 60)
        let r16 = throttle.failed(["source:a", "key:k"], now: 0)
        #expect(!r16)
        let r17 = throttle.failed(["source:a", "key:k"], now: 1)
        #expect(!r17)
        let r18 = throttle.failed(["source:b", "key:k"], now: 2)
        #expect(r18, "the key's third failure")
        let r19 = throttle.failed(["source:b"], now: 3)
        #expect(!r19)
        let r20 = throttle.failed(["source:a", "key:k"], now: 61)
        #expect(!r20, "a new minute")
        for index in 0..<(FailureThrottle.maximumKeys + 10) { _ = throttle.failed(["key:\(index)"], now: 70) }
        #expect(throttle.trackedKeys <= FailureThrottle.maximumKeys + 1)
    }
}
