import NIOCore

/// How TLS connections read: the gateway's accepted connections (data channels, control channels, the API)
/// and the client's and agent's WebSocket connections to it. At most 128 KiB per read and one read per
/// wake-up.
///
/// NIOSSL gathers the plaintext of a whole read burst (every read until `channelReadComplete`) in one buffer
/// per connection, grown as needed and kept for the life of the connection. With four 256 KiB reads per
/// wake-up that buffer grew to 2 MiB, so a session that had carried a bulk transfer kept about 5 MiB in the
/// gateway (two TLS connections) and 2 MiB in each of the client and the agent while it stayed open, idle or
/// not. One read of at most 128 KiB bounds it at 256 KiB (the burst plus the 16 KiB NIOSSL keeps free,
/// rounded up to a power of two), beside NIO's own 128 KiB read buffer. Throughput and CPU per GiB did not
/// move (docs/PERFORMANCE.md, "What a session keeps after a bulk transfer").
public enum TLSSocketReads {
    public static let maximumRead = 128 * 1024
    public static let recvAllocator = AdaptiveRecvByteBufferAllocator(
        minimum: 1024,
        initial: 16384,
        maximum: maximumRead
    )
    public static let maxMessagesPerRead: UInt = 1
}
