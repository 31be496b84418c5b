import NIOCore

extension ByteBuffer {
    /// Whether this buffer's storage is held by nothing else, found as NIOSSL finds it when it reuses its
    /// read buffer: indices back to zero (not `clear()`, which itself replaces shared storage) and a write,
    /// which copies the storage when a slice of it is alive elsewhere. Leaves the buffer holding 8 bytes.
    public mutating func reusedInPlace() -> Bool {
        let before = self.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        self.moveReaderIndex(to: 0)
        self.moveWriterIndex(to: 0)
        self.writeInteger(UInt64(42))
        return self.withVeryUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == before
    }
}
