import NIOCore

/// How the local connections (client) and the target connections (agent) read: at most 64 KiB per read and
/// one read per wake-up. NIO keeps a connection's read buffers for reuse, up to `maxMessagesPerRead` of
/// them, each as large as the largest read it made, for as long as the connection is open: with 256 KiB
/// reads and four per wake-up, a connection that had moved a few MiB kept about 1 MiB across the client
/// and the agent while idle (a database pool's connections after one large result, for instance). Now it
/// keeps one buffer of 64 KiB at most on each end; a message carries 64 KiB anyway, and throughput did not
/// change (docs/PERFORMANCE.md, "What an idle connection keeps").
public enum StreamSocketReads {
    public static let recvAllocator = AdaptiveRecvByteBufferAllocator(
        minimum: 1024,
        initial: 16384,
        maximum: 64 * 1024
    )
    public static let maxMessagesPerRead: UInt = 1

    /// Sets a local (client) or target (agent) connection's options in place, from its bootstrap's
    /// initializer (before it is registered, so it never reads on its own): TCP_NODELAY, the reads above,
    /// no automatic reads (the session reads when it can take the bytes) and half-closes kept. A
    /// bootstrap's `channelOption` applies each option through futures of its own, several allocations per
    /// option at every connection a setup makes. `ClientBootstrap` sets TCP_NODELAY itself (its default), so
    /// a connection it makes passes `noDelaySet: true`: setting it again costs two system calls per setup
    /// (NIO looks up the socket's address first). The agent's tests check the option on a dialled socket.
    public static func configure(_ channel: any Channel, noDelaySet: Bool = false) throws {
        guard let options = channel.syncOptions else { throw ChannelError.operationUnsupported }
        if !noDelaySet { try options.setOption(.tcpOption(.tcp_nodelay), value: 1) }
        try options.setOption(.recvAllocator, value: Self.recvAllocator)
        try options.setOption(.maxMessagesPerRead, value: Self.maxMessagesPerRead)
        try options.setOption(.autoRead, value: false)
        try options.setOption(.allowRemoteHalfClosure, value: true)
    }
}

extension StreamSocketReads {
    #if os(Linux)
    /// The start of Linux's `struct tcp_info` (linux/tcp.h) up to `tcpi_bytes_received`, the 17th 64-bit
    /// word (offset 128, Linux 4.1 and newer), which glibc's declaration stops short of. An older kernel
    /// copies less, and NIO zeroes the buffer first: the count then reads 0.
    struct TCPInfoPrefix: Sendable {
        var words: InlineArray<17, UInt64>
        var bytesReceived: UInt64 { self.words[16] }
    }
    #endif

    /// Whether bytes have arrived on an accepted connection that has read nothing yet (the application
    /// spoke as it connected), or its end has (the kernel counts a FIN in the same sequence space): TCP_INFO's
    /// `tcpi_bytes_received`, one `getsockopt`. False when it cannot be known (not on the channel's event
    /// loop, not a TCP socket, another system), which only costs a message (the stream's SYN goes alone, as
    /// for an application that waits for the server).
    public static func bytesWaiting(on channel: any Channel) -> Bool {
        #if os(Linux)
        guard channel.eventLoop.inEventLoop, let provider = channel as? any SocketOptionProvider else { return false }
        var waiting = false
        // On the channel's event loop the future is completed before it returns, and its callback runs at once.
        let info: EventLoopFuture<TCPInfoPrefix> = provider.unsafeGetSocketOption(level: .tcp, name: .tcp_info)
        info.assumeIsolated().whenSuccess { waiting = $0.bytesReceived > 0 }
        return waiting
        #else
        return false
        #endif
    }
}
