#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's standard output and error, written with `write(2)` (no Foundation `FileHandle`), and its
/// standard input read to the end.
public enum StandardStream: Sendable {
    case output
    case error

    var descriptor: Int32 { self == .output ? 1 : 2 }

    /// Writes all of `text`; a closed or broken stream drops what is left (a program whose output went
    /// away keeps running; Foundation's `FileHandle.write` trapped there).
    public func write(_ text: String) {
        self.write(bytes: Array(text.utf8))
    }

    /// Writes all of `bytes`, retrying short writes and interrupted ones. Returns false when the stream
    /// refused them (closed pipe, full disk), with `errno` set.
    @discardableResult
    public func write(bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = systemWrite(self.descriptor, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += written
            }
            return true
        }
    }

    /// Everything on standard input until its end.
    public static func readInputToEnd() -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return result }
            result.append(contentsOf: chunk[0..<count])
        }
    }
}

/// `write(2)`, named apart from ``StandardStream/write(_:)``.
private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}
