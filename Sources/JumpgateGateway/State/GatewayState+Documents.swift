import JumpgateWire
import NIOConcurrencyHelpers

/// Session documents: each change checked by ``DocumentCatalog``, applied in memory, then written.
extension GatewayState {
    static func mappedDocument<T>(_ body: () throws(DocumentError) -> T) throws(APIError) -> T {
        do {
            return try body()
        } catch {
            throw APIError(400, error.type, error.message)
        }
    }

    func changeDocuments<T>(
        _ body: (inout DocumentCatalog) throws(DocumentError) -> (T, [StoreChange])
    ) throws(APIError) -> T {
        try self.withStorage { storage throws(APIError) -> T in
            var catalog = storage.documents
            let (result, changes) = try Self.mappedDocument { () throws(DocumentError) in try body(&catalog) }
            storage.documents = catalog
            for change in changes { self.store?.submit(change) }
            return result
        }
    }

    public func createDocument(name: String, content: String) throws(APIError) -> DocumentCatalog.Found {
        let now = self.clock()
        return try self.changeDocuments { catalog throws(DocumentError) in
            let version = try catalog.create(name: name, content: content, now: now)
            return (try catalog.find(name), [.documentVersion(version, isDefault: true)])
        }
    }

    public func updateDocument(
        name: String,
        content: String,
        expected: String?
    ) throws(APIError)
        -> DocumentCatalog.Found
    {
        let now = self.clock()
        return try self.changeDocuments { catalog throws(DocumentError) in
            let (version, seeded) = try catalog.update(name: name, content: content, expected: expected, now: now)
            let changes: [StoreChange] =
                (seeded.map { [.documentVersion($0, isDefault: true)] } ?? []) + [
                    .documentVersion(version, isDefault: false)
                ]
            return (try catalog.find(name, version: "\(version.version)"), changes)
        }
    }

    public func setDefaultDocumentVersion(name: String, version: String) throws(APIError) -> Int {
        try self.changeDocuments { catalog throws(DocumentError) in
            let chosen = try catalog.setDefault(name: name, version: version)
            return (chosen, [.documentDefault(name: name, version: chosen)])
        }
    }

    public func deleteDocument(name: String) throws(APIError) {
        try self.changeDocuments { catalog throws(DocumentError) in
            try catalog.delete(name: name)
            return ((), [.documentDeleted(name: name)])
        }
    }

    /// A document as it is now (`version`: nil for the default one).
    public func document(_ name: String, version: String? = nil) throws(APIError) -> DocumentCatalog.Found {
        let catalog = self.storage.withLockedValue { $0.documents }
        return try Self.mappedDocument { () throws(DocumentError) in try catalog.find(name, version: version) }
    }

    public var documentCatalog: DocumentCatalog { self.storage.withLockedValue { $0.documents } }
}
