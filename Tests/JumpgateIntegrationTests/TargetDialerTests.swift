import JumpgateNIO
import JumpgateWire
import NIOCore
import NIOPosix
import Testing

@testable import JumpgateAgent

/// The agent's target connections, dialled for real on 127.0.0.1: the socket options the data path relies
/// on, read back from the kernel.
@Suite("Target dialer: a dialled connection's options")
struct TargetDialerTests {
    @Test("TCP_NODELAY (ClientBootstrap's own default), no automatic reads, half-closes kept, one read per wake-up")
    func dialledOptions() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let dialer = TargetDialer(allowList: try AllowList(allow: ["127.0.0.1:\(port)"]), timeout: .seconds(5))
        let loop = group.next()
        let channel = try await dialer.dial(host: "127.0.0.1", port: port, eventLoop: loop).get()
        let options = try await loop.submit { () -> (Int, Bool, Bool, UInt) in
            let sync = try #require(channel.syncOptions)
            return (
                try sync.getOption(.tcpOption(.tcp_nodelay)),  // getsockopt: what the kernel has
                try sync.getOption(.autoRead),
                try sync.getOption(.allowRemoteHalfClosure),
                try sync.getOption(.maxMessagesPerRead)
            )
        }.get()
        #expect(options.0 != 0, "TCP_NODELAY on the target's socket")
        #expect(!options.1 && options.2 && options.3 == StreamSocketReads.maxMessagesPerRead)
        try await channel.close()
        try await server.close()
    }
}
