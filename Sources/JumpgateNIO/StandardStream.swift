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
        FileDescriptorIO.writeAll(text.utf8, to: self.descriptor)
    }

    /// Writes all of `bytes`, as ``write(_:)``.
    public func write(bytes: some Collection<UInt8>) {
        FileDescriptorIO.writeAll(bytes, to: self.descriptor)
    }

    /// Everything on standard input until its end.
    public static func readInputToEnd() -> [UInt8] {
        FileDescriptorIO.readToEnd(0)
    }
}

/// Whole reads and writes on a file descriptor, for the blocking work outside the event loops (standard
/// streams, a terminal, a child program's pipe).
public enum FileDescriptorIO {
    /// Writes all of `bytes` to `descriptor`, waiting (poll) while a non-blocking descriptor is full. False
    /// when it stopped at another error (a reader that went away, a full disk), with `errno` set.
    @discardableResult
    public static func writeAll(_ bytes: some Collection<UInt8>, to descriptor: CInt) -> Bool {
        if let written = bytes.withContiguousStorageIfAvailable({
            Self.writeAll(UnsafeRawBufferPointer($0), to: descriptor)
        }) {
            return written
        }
        return Array(bytes).withUnsafeBytes { Self.writeAll($0, to: descriptor) }
    }

    private static func writeAll(_ bytes: UnsafeRawBufferPointer, to descriptor: CInt) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let done = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if done > 0 {
                offset += done
            } else if done < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                var ready = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
                _ = poll(&ready, 1, 1000)
            } else if done < 0, errno == EINTR {
                continue
            } else {
                return false
            }
        }
        return true
    }

    /// Everything `descriptor` yields until its end (blocking), or until an error other than EINTR.
    public static func readToEnd(_ descriptor: CInt) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return result }
            result.append(contentsOf: chunk[0..<count])
        }
    }
}
