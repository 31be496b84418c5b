import FoundationEssentials
import Glibc
import JumpgateNIO
import JumpgateWire

/// What `jumpgate agent register` stores and `agent run` reads: endpoint, CA, instance id, secret and
/// the allow/deny patterns given at registration. Files are created 0600 in a 0700 directory.
public struct AgentStateDirectory: Sendable {
    public var path: String
    public var endpoint: String
    public var instanceID: String
    public var secret: String
    public var name: String
    public var allow: [String]
    public var deny: [String]

    public var caFile: String { self.path + "/ca.pem" }
    static func configFile(_ path: String) -> String { path + "/agent.json" }
    static func secretFile(_ path: String) -> String { path + "/instance.secret" }

    public static func exists(at path: String) -> Bool {
        FileManager.default.fileExists(atPath: configFile(path))
    }

    public static func load(from path: String) throws -> AgentStateDirectory {
        guard let data = FileManager.default.contents(atPath: configFile(path)) else {
            throw AgentError(
                "\(path) holds no registration (\(configFile(path)) is missing). Run 'jumpgate agent register' first."
            )
        }
        guard let secretData = FileManager.default.contents(atPath: secretFile(path)) else {
            throw AgentError("\(secretFile(path)) is missing. Register again with 'jumpgate agent register --force'.")
        }
        let json = try JSONValue(parsing: [UInt8](data))
        guard let endpoint = json["endpoint"]?.stringValue, let instanceID = json["instanceId"]?.stringValue else {
            throw AgentError(
                "\(configFile(path)) is damaged: it lacks endpoint or instanceId. Register again with --force."
            )
        }
        return AgentStateDirectory(
            path: path,
            endpoint: endpoint,
            instanceID: instanceID,
            secret: String(decoding: secretData, as: UTF8.self).trimmingWhitespace(),
            name: json["name"]?.stringValue ?? "",
            allow: (json["allow"]?.arrayValue ?? []).compactMap(\.stringValue),
            deny: (json["deny"]?.arrayValue ?? []).compactMap(\.stringValue)
        )
    }

    /// Creates the directory (0700) and checks a file can be written in it, before anything is registered.
    public static func prepare(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: path,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw AgentError(
                "The state directory \(path) cannot be created: a parent is a file, or the disk is read-only. Choose another --state-dir."
            )
        }
        let probe = path + "/.write-test"
        do {
            try Self.write("", to: probe)
        } catch {
            throw AgentError(
                "The state directory \(path) is not writable: \(error). Choose another --state-dir, or fix its permissions."
            )
        }
        unlink(probe)
    }

    public func save(caPEM: String) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: self.path,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw AgentError("the state directory \(self.path) cannot be created (is a parent a file, or read-only?)")
        }
        let json: JSONValue = [
            "endpoint": .string(self.endpoint), "instanceId": .string(self.instanceID), "name": .string(self.name),
            "allow": .array(self.allow.map { .string($0) }), "deny": .array(self.deny.map { .string($0) }),
        ]
        try Self.write(json.serialized() + "\n", to: Self.configFile(self.path))
        try Self.write(self.secret + "\n", to: Self.secretFile(self.path))
        try Self.write(caPEM, to: self.caFile)
    }

    static func write(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw AgentError("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        fchmod(fd, 0o600)
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            guard n > 0 else { throw AgentError("cannot write \(path): \(String(cString: strerror(errno)))") }
            offset += n
        }
    }
}

/// An error the agent reports to its operator: what happened and what to do.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public var description: String
    /// The gateway said no retry can succeed (the session is over, or not this agent's).
    public var isFinal = false
    public init(_ description: String, isFinal: Bool = false) {
        self.description = description
        self.isFinal = isFinal
    }
}

/// One `agent run` per state directory: an exclusive lock (flock) on STATE_DIR/agent.pid, which holds the
/// running agent's PID. The kernel releases it when the process ends, however it ends.
public final class AgentRunLock: Sendable {
    public let path: String
    let descriptor: Int32

    init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    public static func acquire(stateDirectory: String) throws -> AgentRunLock {
        let path = stateDirectory + "/agent.pid"
        switch PIDFileLock.acquire(path) {
        case .locked(let descriptor):
            return AgentRunLock(path: path, descriptor: descriptor)
        case .cannotOpen(let error):
            throw AgentError(
                "cannot open \(path): \(String(cString: strerror(error)).lowercased()); the state directory must be writable by this user"
            )
        case .heldBy(let pid):
            let holder = pid.map(String.init) ?? "?"
            throw AgentError(
                "another jumpgate agent (PID \(holder)) runs with the state directory \(stateDirectory); stop it first (kill \(holder))"
            )
        }
    }

    /// At a clean exit: the file goes, then the lock.
    public func release() {
        unlink(self.path)
        close(self.descriptor)
    }
}
