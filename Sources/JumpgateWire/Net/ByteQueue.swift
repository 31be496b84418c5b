import NIOCore

/// Bytes waiting to be sent, kept as the buffers they arrived in (no copy on arrival, no growing
/// contiguous buffer): the one copy happens when they are moved into an outgoing frame.
public struct ByteQueue: Sendable {
    private var buffers = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    public private(set) var readableBytes = 0

    public init() {}

    public var isEmpty: Bool { self.readableBytes == 0 }

    /// Queues `buffer`'s readable bytes (a reference, not a copy).
    public mutating func append(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        self.readableBytes += buffer.readableBytes
        self.buffers.append(buffer)
    }

    /// Moves the first `count` queued bytes (at most ``readableBytes``) to the end of `destination`.
    public mutating func move(_ count: Int, into destination: inout ByteBuffer) {
        var remaining = min(count, self.readableBytes)
        self.readableBytes -= remaining
        while remaining > 0 {
            var head = self.buffers.removeFirst()
            if head.readableBytes <= remaining {
                remaining -= head.readableBytes
                destination.writeBuffer(&head)
            } else {
                var part = head.readSlice(length: remaining)!
                destination.writeBuffer(&part)
                remaining = 0
                self.buffers.prepend(head)
            }
        }
    }

    public mutating func removeAll() {
        self.buffers.removeAll(keepingCapacity: true)
        self.readableBytes = 0
    }
}
