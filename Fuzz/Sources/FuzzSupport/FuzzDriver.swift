import NIOCore

/// One fuzz input, as libFuzzer hands it over.
public typealias FuzzEntry = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: FuzzEntry
) -> CInt

/// Runs libFuzzer's driver with the process's arguments (`-max_total_time=30 corpus/` and the rest).
/// Each target's `<Module>_main` calls this: SwiftPM aliases `main` to that symbol, so libFuzzer's own
/// `main` is not linked and its driver is reached through this call instead.
public func runFuzzer(
    _ argc: CInt,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
    _ entry: FuzzEntry
) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, entry)
}

/// The input's bytes, and a deterministic way to cut them into pieces (drip-feeding a decoder).
public struct FuzzInput {
    public let bytes: [UInt8]

    public init(_ start: UnsafePointer<UInt8>?, _ count: Int) {
        self.bytes = start.map { Array(UnsafeBufferPointer(start: $0, count: count)) } ?? []
    }

    /// The first byte chooses how the rest is cut: 0 (and an empty input) keeps it whole, n cuts it into
    /// pieces of n bytes. Returns the pieces of the remaining bytes.
    public func pieces() -> [ByteBuffer] {
        guard let first = self.bytes.first else { return [] }
        let rest = self.bytes.dropFirst()
        let size = first == 0 ? max(rest.count, 1) : Int(first)
        var pieces: [ByteBuffer] = []
        var index = rest.startIndex
        while index < rest.endIndex {
            let end = min(index + size, rest.endIndex)
            pieces.append(ByteBuffer(bytes: rest[index..<end]))
            index = end
        }
        return pieces
    }

    /// The bytes after the first (the one `pieces()` reads).
    public var body: ArraySlice<UInt8> { self.bytes.dropFirst() }
}

/// A property the fuzzed code broke: stops the run so libFuzzer saves the input.
public func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError("fuzz property broken: \(message())") }
}
