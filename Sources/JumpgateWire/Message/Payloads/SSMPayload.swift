import NIOCore

/// A JSON payload shape of the protocol. Encoding keeps Go's field order; decoding is lenient as Go is
/// (keys matched case-insensitively, unknown keys ignored) but rejects wrong types with a clear reason.
public protocol SSMJSONPayload: Sendable {
    init(json: JSONValue) throws(WireError)
    var json: JSONValue { get }
}

extension SSMJSONPayload {
    /// Parses a payload buffer.
    public init(payload: ByteBuffer) throws(WireError) {
        let value: JSONValue
        do {
            value = try payload.withUnsafeReadableBytes { raw throws(JSONParseError) in
                try JSONValue(parsing: raw)
            }
        } catch {
            throw WireError(.invalidPayload, "\(Self.self): \(error)")
        }
        try self.init(json: value)
    }

    /// The compact JSON bytes.
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        let bytes = self.json.serializedBytes()
        var buffer = allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        return buffer
    }
}

/// Field accessors that turn a missing or mistyped field into a ``WireError``.
struct JSONFields {
    let value: JSONValue
    let owner: String

    init(_ value: JSONValue, owner: String) throws(WireError) {
        guard case .object = value else { throw WireError(.invalidPayload, "\(owner) is not a JSON object") }
        self.value = value
        self.owner = owner
    }

    func string(_ key: String) throws(WireError) -> String {
        guard let field = self.value[key] else { throw WireError(.invalidPayload, "\(owner): missing \(key)") }
        guard let s = field.stringValue else { throw WireError(.invalidPayload, "\(owner): \(key) is not a string") }
        return s
    }

    /// A string field that Go would leave empty when absent or null.
    func optionalString(_ key: String) throws(WireError) -> String {
        guard let field = self.value[key], !field.isNull else { return "" }
        guard let s = field.stringValue else { throw WireError(.invalidPayload, "\(owner): \(key) is not a string") }
        return s
    }

    func int(_ key: String) throws(WireError) -> Int64 {
        guard let field = self.value[key] else { throw WireError(.invalidPayload, "\(owner): missing \(key)") }
        guard let i = field.int64Value else { throw WireError(.invalidPayload, "\(owner): \(key) is not an integer") }
        return i
    }

    func optionalInt(_ key: String) throws(WireError) -> Int64 {
        guard let field = self.value[key], !field.isNull else { return 0 }
        guard let i = field.int64Value else { throw WireError(.invalidPayload, "\(owner): \(key) is not an integer") }
        return i
    }

    func optionalBool(_ key: String) throws(WireError) -> Bool {
        guard let field = self.value[key], !field.isNull else { return false }
        guard let b = field.boolValue else { throw WireError(.invalidPayload, "\(owner): \(key) is not a boolean") }
        return b
    }

    func optionalArray(_ key: String) throws(WireError) -> [JSONValue] {
        guard let field = self.value[key], !field.isNull else { return [] }
        guard let a = field.arrayValue else { throw WireError(.invalidPayload, "\(owner): \(key) is not an array") }
        return a
    }

    func raw(_ key: String) -> JSONValue {
        self.value[key] ?? .null
    }
}
