#if canImport(Glibc)
import Glibc
#endif

/// A process's open file descriptors and resident memory, read from /proc (Linux); nil elsewhere.
public struct ProcessStatistics: Sendable, Hashable {
    public var openFileDescriptors: Int
    public var residentBytes: Int

    /// This process (`pid` nil), or another one (the tests watch the gateway and agent they started).
    public static func sample(pid: Int32? = nil) -> ProcessStatistics? {
        #if os(Linux)
        let directory = "/proc/" + (pid.map { "\($0)" } ?? "self")
        guard let resident = Self.residentBytes(directory),
            let descriptors = Self.openFileDescriptors(directory, listingOwnDescriptor: pid == nil)
        else { return nil }
        return ProcessStatistics(openFileDescriptors: descriptors, residentBytes: resident)
        #else
        return nil
        #endif
    }

    #if os(Linux)
    /// Entries of DIR/fd, less the one the listing itself holds open when it lists its own process.
    static func openFileDescriptors(_ path: String, listingOwnDescriptor: Bool) -> Int? {
        guard let directory = opendir(path + "/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [46], name != [46, 46] { count += 1 }  // not "." or ".."
        }
        return listingOwnDescriptor ? count - 1 : count
    }

    /// The second field of DIR/statm (resident pages) times the page size.
    static func residentBytes(_ path: String) -> Int? {
        let fd = open(path + "/statm", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 128)
        let count = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        let fields = bytes[..<count].split(separator: 32)
        guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
    #endif
}
