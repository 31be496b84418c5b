import FoundationEssentials
import JumpgateWire

/// One stored version of a custom session document.
public struct StoredDocumentVersion: Hashable, Sendable {
    public var name: String
    public var version: Int
    public var content: String
    public var createdEpoch: Int64

    public init(name: String, version: Int, content: String, createdEpoch: Int64) {
        self.name = name
        self.version = version
        self.content = content
        self.createdEpoch = createdEpoch
    }
}

/// The session documents the gateway knows: the built-in AWS ones (read-only) and custom ones with their
/// versions and default version, as SSM keeps them. Every change is checked here (a pure value type); the
/// gateway applies it in memory and writes what it returns to the store.
public struct DocumentCatalog: Sendable {
    public struct Entry: Hashable, Sendable {
        public var versions: [StoredDocumentVersion]
        public var defaultVersion: Int
        public var latest: StoredDocumentVersion { self.versions[self.versions.count - 1] }
    }

    public private(set) var custom: [String: Entry] = [:]
    /// A custom document's versions kept at most (AWS keeps 1,000).
    public static let maximumVersions = 1_000
    /// Custom documents at most.
    public static let maximumDocuments = 1_000

    public init() {}

    /// What is stored: versions (in any order) and default versions.
    public mutating func restore(versions: [StoredDocumentVersion], defaults: [String: Int]) {
        var entries: [String: [StoredDocumentVersion]] = [:]
        for version in versions { entries[version.name, default: []].append(version) }
        for (name, list) in entries {
            let sorted = list.sorted { $0.version < $1.version }
            let fallback = sorted[sorted.count - 1].version
            let chosen = defaults[name].flatMap { d in sorted.contains { $0.version == d } ? d : nil } ?? fallback
            self.custom[name] = Entry(versions: sorted, defaultVersion: chosen)
        }
    }

    public static func isBuiltIn(_ name: String) -> Bool { BuiltInDocuments.contents[name] != nil }

    /// The built-in documents that hold the account's preferences and may be updated (as in SSM, where the
    /// account owns SSM-SessionManagerRunShell): their first version is the built-in content.
    public static func isUpdatable(_ name: String) -> Bool { name == BuiltInDocuments.shell }

    /// The names SSM keeps for AWS (and custom names must not start with).
    static func isReserved(_ name: String) -> Bool {
        let lower = name.lowercased()
        return ["aws", "amazon", "amzn", "ssm-"].contains { lower.hasPrefix($0) }
    }

    /// A document name as SSM allows it: 3 to 128 letters, digits, `_`, `-` and `.`.
    static func isValidName(_ name: String) -> Bool {
        (3...128).contains(name.utf8.count)
            && name.unicodeScalars.allSatisfy {
                $0.isASCII
                    && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0))
            }
    }

    static func notFound(_ name: String) -> DocumentError {
        DocumentError("InvalidDocument", "Document \(name.prefix(128)) does not exist.")
    }

    /// A built-in document cannot be changed or deleted.
    static func readOnly(_ name: String) -> DocumentError {
        DocumentError(
            "InvalidDocumentOperation",
            "\(name) is a built-in document and cannot be changed or deleted; create a document of your own (aws ssm create-document) and name it in StartSession."
        )
    }

    // MARK: changes

    public mutating func create(
        name: String,
        content: String,
        now: Int64
    ) throws(DocumentError)
        -> StoredDocumentVersion
    {
        guard Self.isValidName(name) else {
            throw DocumentError(
                "ValidationException",
                "Document name '\(name.prefix(130))' must be 3 to 128 letters, digits, '_', '-' or '.'."
            )
        }
        guard !Self.isBuiltIn(name), !Self.isReserved(name) else {
            throw DocumentError(
                "ValidationException",
                "Document names starting with AWS, Amazon, AMZN or SSM- are reserved."
            )
        }
        guard self.custom[name] == nil else {
            throw DocumentError(
                "DocumentAlreadyExists",
                "Document \(name) already exists; use UpdateDocument for a new version."
            )
        }
        guard self.custom.count < Self.maximumDocuments else {
            throw DocumentError(
                "DocumentLimitExceeded",
                "The gateway holds \(Self.maximumDocuments) documents already."
            )
        }
        _ = try SessionDocumentContent.parse(content)
        let version = StoredDocumentVersion(name: name, version: 1, content: content, createdEpoch: now)
        self.custom[name] = Entry(versions: [version], defaultVersion: 1)
        return version
    }

    /// A new version (not the default: ``setDefault(name:version:)`` makes it so, as in SSM). `expected`:
    /// the version the update is based on (`$LATEST` or a number), if the caller gave one.
    /// The preferences document's first stored version is the built-in content (`seeded`, to be stored too).
    public mutating func update(
        name: String,
        content: String,
        expected: String?,
        now: Int64
    ) throws(DocumentError)
        -> (version: StoredDocumentVersion, seeded: StoredDocumentVersion?)
    {
        if Self.isBuiltIn(name), !Self.isUpdatable(name) { throw Self.readOnly(name) }
        var seeded: StoredDocumentVersion?
        if self.custom[name] == nil, let builtIn = BuiltInDocuments.contents[name], Self.isUpdatable(name) {
            seeded = StoredDocumentVersion(name: name, version: 1, content: builtIn, createdEpoch: 0)
            self.custom[name] = Entry(versions: [seeded!], defaultVersion: 1)
        }
        guard var entry = self.custom[name] else { throw Self.notFound(name) }
        if let expected, expected != "$LATEST", Int(expected) != entry.latest.version {
            throw DocumentError(
                "InvalidDocumentVersion",
                "Version \(expected.prefix(20)) is not the latest version of \(name) (\(entry.latest.version))."
            )
        }
        guard !entry.versions.contains(where: { $0.content == content }) else {
            throw DocumentError("DuplicateDocumentContent", "A version of \(name) already has this content.")
        }
        guard entry.versions.count < Self.maximumVersions else {
            throw DocumentError(
                "DocumentVersionLimitExceeded",
                "\(name) has \(Self.maximumVersions) versions; delete it and create it again."
            )
        }
        let parsed = try SessionDocumentContent.parse(content)
        if Self.isBuiltIn(name), parsed.sessionType != BuiltInDocuments.parsed[name]?.sessionType {
            throw .content("\(name) keeps its session type, \(BuiltInDocuments.parsed[name]?.sessionType ?? "").")
        }
        let version = StoredDocumentVersion(
            name: name,
            version: entry.latest.version + 1,
            content: content,
            createdEpoch: now
        )
        entry.versions.append(version)
        self.custom[name] = entry
        return (version, seeded)
    }

    public mutating func setDefault(name: String, version: String) throws(DocumentError) -> Int {
        if Self.isBuiltIn(name), self.custom[name] == nil { throw Self.readOnly(name) }
        guard var entry = self.custom[name] else { throw Self.notFound(name) }
        let chosen = try Self.version(version, of: entry, name: name)
        entry.defaultVersion = chosen.version
        self.custom[name] = entry
        return chosen.version
    }

    public mutating func delete(name: String) throws(DocumentError) {
        if Self.isBuiltIn(name) { throw Self.readOnly(name) }
        guard self.custom.removeValue(forKey: name) != nil else { throw Self.notFound(name) }
    }

    // MARK: reading

    /// A document as DescribeDocument and GetDocument show it.
    public struct Found: Sendable {
        public var name: String
        public var content: String
        public var parsed: SessionDocumentContent
        public var version: Int
        public var latestVersion: Int
        public var defaultVersion: Int
        public var createdEpoch: Int64
        public var isBuiltIn: Bool
    }

    /// `version`: a number, `$LATEST`, `$DEFAULT` or nil (the default version, as StartSession uses).
    public func find(_ name: String, version: String? = nil) throws(DocumentError) -> Found {
        if self.custom[name] == nil, let content = BuiltInDocuments.contents[name],
            let parsed = BuiltInDocuments.parsed[name]
        {
            guard version == nil || ["1", "$LATEST", "$DEFAULT"].contains(version!) else {
                throw DocumentError("InvalidDocumentVersion", "\(name) has one version, 1.")
            }
            return Found(
                name: name,
                content: content,
                parsed: parsed,
                version: 1,
                latestVersion: 1,
                defaultVersion: 1,
                createdEpoch: 0,
                isBuiltIn: true
            )
        }
        guard let entry = self.custom[name] else { throw Self.notFound(name) }
        let chosen = try Self.version(version ?? "$DEFAULT", of: entry, name: name)
        // Stored content parsed when it was stored; a version that no longer parses is reported as such.
        let parsed = try SessionDocumentContent.parse(chosen.content)
        return Found(
            name: name,
            content: chosen.content,
            parsed: parsed,
            version: chosen.version,
            latestVersion: entry.latest.version,
            defaultVersion: entry.defaultVersion,
            createdEpoch: chosen.createdEpoch,
            isBuiltIn: Self.isBuiltIn(name)
        )
    }

    static func version(_ text: String, of entry: Entry, name: String) throws(DocumentError) -> StoredDocumentVersion {
        let number: Int?
        switch text {
        case "$LATEST": number = entry.latest.version
        case "$DEFAULT": number = entry.defaultVersion
        default: number = Int(text)
        }
        guard let number, let found = entry.versions.first(where: { $0.version == number }) else {
            throw DocumentError("InvalidDocumentVersion", "\(name) has no version \(text.prefix(20)).")
        }
        return found
    }

    /// Every document's name, built-ins first, then custom ones, each sorted.
    public var names: [String] {
        BuiltInDocuments.contents.keys.sorted() + self.custom.keys.filter { !Self.isBuiltIn($0) }.sorted()
    }

    /// The account shells and commands run as, and the commands a shell starts with: a Standard_Stream
    /// document's own inputs where it sets them, else the account's preferences.
    public func shellSettings(for document: SessionDocumentContent) -> (runAs: String?, profile: String?) {
        let preferences = try? self.find(BuiltInDocuments.shell).parsed
        let own = document.sessionType == "Standard_Stream" ? document : nil
        return (own?.runAsUser ?? preferences?.runAsUser, own?.shellProfile ?? preferences?.shellProfile)
    }

    /// Whether a session of `document` records what its client types: the document's own
    /// `inputs.recordInput` where it sets it, else the account's preferences; no by default.
    public func recordsInput(for document: SessionDocumentContent) -> Bool {
        let own = document.sessionType == "Standard_Stream" ? document.recordInput : nil
        return own ?? (try? self.find(BuiltInDocuments.shell).parsed.recordInput) ?? false
    }

    /// The idle timeout and maximum duration that apply to a session of `document`: a Standard_Stream
    /// document's own inputs where it sets them, else the account's preferences (SSM-SessionManagerRunShell's
    /// default version), which apply to every session as in SSM.
    public func limits(for document: SessionDocumentContent) -> (idle: Int64?, maximum: Int64?) {
        let preferences = try? self.find(BuiltInDocuments.shell).parsed
        let own = document.sessionType == "Standard_Stream" ? document : nil
        // Each limit from the document when it sets one, else from the preferences: a custom document
        // cannot lift the account's limits by leaving them out.
        return (
            own?.idleTimeoutSeconds ?? preferences?.idleTimeoutSeconds,
            own?.maximumDurationSeconds ?? preferences?.maximumDurationSeconds
        )
    }
}
