import Crypto
import FoundationEssentials
import Glibc

/// Seals secrets with AES-256-GCM. The key lives in a file of its own (0600), created with the store;
/// each sealed value is bound to its row ("instance:mi-...") so a sealed secret cannot be moved to another.
struct SecretSealer: Sendable {
    let key: SymmetricKey

    static func load(keyPath: String, databaseExisted: Bool) throws -> SecretSealer {
        if let data = FileManager.default.contents(atPath: keyPath) {
            guard data.count == 32 else {
                throw StoreError("the store key \(keyPath) is not 32 bytes: restore it from a backup")
            }
            return SecretSealer(key: SymmetricKey(data: data))
        }
        guard !databaseExisted else {
            throw StoreError(
                "the store key \(keyPath) is missing but the store exists: its secrets cannot be read without it; "
                    + "restore the key file from a backup"
            )
        }
        let key = SymmetricKey(size: .bits256)
        let bytes = key.withUnsafeBytes { Array($0) }
        let fd = Glibc.open(keyPath, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw StoreError("cannot create the store key \(keyPath): errno \(errno)") }
        defer { close(fd) }
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw StoreError("cannot write the store key \(keyPath): errno \(errno)")
        }
        return SecretSealer(key: key)
    }

    func seal(_ secret: String, context: String) -> String {
        // AES-GCM with a random nonce cannot fail for these sizes.
        let box = try! AES.GCM.seal(Data(secret.utf8), using: self.key, authenticating: Data(context.utf8))
        return "v1:" + box.combined!.base64EncodedString()
    }

    func open(_ sealed: String, context: String) throws -> String {
        guard sealed.hasPrefix("v1:"), let data = Data(base64Encoded: String(sealed.dropFirst(3))),
            let box = try? AES.GCM.SealedBox(combined: data),
            let plain = try? AES.GCM.open(box, using: self.key, authenticating: Data(context.utf8)),
            let text = String(data: plain, encoding: .utf8)
        else {
            throw StoreError("a sealed secret (\(context)) does not open with the store key: wrong or damaged key file")
        }
        return text
    }
}
