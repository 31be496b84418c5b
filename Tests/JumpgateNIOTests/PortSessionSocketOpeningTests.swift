import JumpgateWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import JumpgateNIO

/// `PortSession.openStream(for:)` as the client's listener calls it, with no answer passed in: it asks the
/// accepted socket whether bytes already arrived (``StreamSocketReads/bytesWaiting(on:)``) and holds the
/// stream's SYN for them if so. Real sockets on 127.0.0.1, one event loop: a client and an agent session
/// over a TCP connection with ``SSMStreamFramer`` (the relay-blind path's framing), and a local listener.
@Suite("Port sessions on real sockets: a stream's opening asks the accepted socket")
struct PortSessionSocketOpeningTests {
    /// Records that the session was established; everything else is left alone.
    final class Established: PortSessionDelegate {
        let flag: NIOLockedValueBox<Bool>
        init(_ flag: NIOLockedValueBox<Bool>) { self.flag = flag }
        func sessionEstablished(_ session: PortSession, negotiated: NegotiatedSession, customerMessage: String) {
            self.flag.withLockedValue { $0 = true }
        }
        func streamRequested(_ session: PortSession, id: SmuxStreamID) {}
        func streamFailed(_ session: PortSession, id: SmuxStreamID, reason: String?) {}
        func sessionEnded(_ session: PortSession, reason: String, byPeer: Bool) {}
    }

    static func session(_ role: PortSession.Role) -> PortSession {
        var logger = Logger(label: "socket-opening")
        logger.logLevel = .critical
        return PortSession(sessionID: "s-1", role: role, logger: logger)
    }

    @Test("a connection that spoke before it was opened holds its SYN for its bytes; a silent one sends it at once")
    func opensOnRealSockets() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let established = NIOLockedValueBox(false)
        let agentServer = try await ServerBootstrap(group: loop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let agent = Self.session(
                        .agent(
                            .init(
                                agentVersion: "3.3.9999.0",
                                sessionType: "Port",
                                properties: BackToBack.forwarding,
                                offeredExtensions: .all
                            )
                        )
                    )
                    agent.delegate = Established(NIOLockedValueBox(false))
                    try channel.pipeline.syncOperations.addHandlers([SSMStreamFramer(), agent])
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let client = NIOLockedValueBox<NIOLoopBound<PortSession>?>(nil)
        let dataChannel = try await ClientBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let session = Self.session(
                        .client(
                            .init(clientVersion: JumpgateVersion.clientProtocolVersion, supportedExtensions: .all)
                        )
                    )
                    session.delegate = Established(established)
                    try channel.pipeline.syncOperations.addHandlers([SSMStreamFramer(), session])
                    client.withLockedValue { $0 = NIOLoopBound(session, eventLoop: channel.eventLoop) }
                }
            }
            .connect(to: try #require(agentServer.localAddress)).get()
        let accepted = NIOLockedValueBox<[Int: any Channel]>([:])
        let listener = try await ServerBootstrap(group: loop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // As the client's listener does: autoRead off, so nothing is read before the stream opens.
                    try StreamSocketReads.configure(channel)
                    if let port = channel.remoteAddress?.port { accepted.withLockedValue { $0[port] = channel } }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let speaker = try await ClientBootstrap(group: group).connect(to: try #require(listener.localAddress)).get()
        let silent = try await ClientBootstrap(group: group).connect(to: try #require(listener.localAddress)).get()
        try await speaker.writeAndFlush(ByteBuffer(string: "SELECT 1")).get()
        try await StreamSocketReadsTests.eventually("the session established") {
            established.withLockedValue { $0 }
        }
        let (speakerPort, silentPort) = (
            try #require(speaker.localAddress?.port), try #require(silent.localAddress?.port)
        )
        try await StreamSocketReadsTests.eventually("both connections accepted") {
            accepted.withLockedValue { $0[speakerPort] != nil && $0[silentPort] != nil }
        }
        let spoke = try #require(accepted.withLockedValue { $0[speakerPort] })
        let quiet = try #require(accepted.withLockedValue { $0[silentPort] })
        try await StreamSocketReadsTests.eventually("the speaker's bytes arrived") {
            try await loop.submit { StreamSocketReads.bytesWaiting(on: spoke) }.get()
        }
        let bound = try #require(client.withLockedValue { $0 })
        /// Opens a stream for `channel` as the listener does; returns how many messages that sent at once.
        @Sendable func messagesSentOpening(_ channel: any Channel) async throws -> Int64 {
            try await loop.submit {
                let session = bound.value
                let before = session.machine.reliability.nextSequenceNumber
                _ = try session.openStream(for: channel)
                return session.machine.reliability.nextSequenceNumber - before
            }.get()
        }
        #expect(try await messagesSentOpening(spoke) == 0, "the SYN did not wait for the bytes already there")
        #expect(try await messagesSentOpening(quiet) == 1, "the SYN of a silent connection did not go at once")
        for channel in [speaker, silent, dataChannel, listener, agentServer] { try? await channel.close() }
        try await group.shutdownGracefully()
    }
}
