import JumpgateWire
import NIOCore

extension PortSession {
    final class StreamState {
        var channel: (any Channel)?
        /// Bytes read from TCP that could not be sent yet (window or buffer full).
        var backlog = ByteQueue()
        var readPaused = false
        var localEOF = false
        /// The TCP connection is gone; its backlog may still be draining into the smux window.
        var tcpClosed = false
        /// Data (and a FIN) that arrived before the target connection was up; bounded by the smux window.
        var earlyData: [ByteBuffer] = []
        var earlyBytes = 0
        var earlyFIN = false
        /// smux v2: bytes written to the connection while it was not writable, not yet given back to the
        /// peer's window.
        var unconsumed = 0
        /// Data arrived from the peer on this stream (a refused stream never gets any).
        var receivedData = false
        init() {}
    }
}
