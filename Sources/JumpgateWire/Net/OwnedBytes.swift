import NIOCore

extension ByteBuffer {
    /// The readable bytes copied into storage of their own. A payload may be a slice of the TLS handler's
    /// read buffer (borrowed: `WebSocketHandler.Configuration.borrowsUnmaskedPayloads`), which NIOSSL reuses
    /// for its next read; a slice still alive then makes that read copy the whole buffer, capacity and all.
    /// Whatever keeps a payload past the read it came in (an out-of-order message, early data for a
    /// connection still being dialled, a frame held for an absent side of the gateway's relay) keeps this
    /// copy.
    public func ownedCopy() -> ByteBuffer {
        ByteBufferAllocator().buffer(buffer: self)
    }
}
