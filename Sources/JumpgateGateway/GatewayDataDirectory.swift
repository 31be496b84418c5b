import FoundationEssentials
import Glibc
import JumpgateNIO
import JumpgateWire

#if canImport(Glibc)
import Glibc
#endif

/// The gateway's data directory: TLS material and the administrator's credentials, created on first start.
struct GatewayDataDirectory {
    var caFile: String
    var credentialsFile: String
    var serverCertificatePEM: String
    var serverKeyPEM: String
    var adminAccessKeyID: String
    var adminSecret: String

    static func prepare(configuration: GatewayConfiguration) throws -> GatewayDataDirectory {
        let fm = FileManager.default
        let root = configuration.dataDirectory
        // mkdir and chmod directly: their errno says what is wrong (Foundation's errors do not, in words).
        for directory in [root, root + "/tls"] {
            if mkdir(directory, 0o700) != 0, errno != EEXIST { throw Self.writeFailure(directory, errno) }
            guard FilePathText.isDirectory(directory) == true else {
                throw GatewayStartError(
                    "\(directory) is not a directory; move that file away, or give another --data-dir"
                )
            }
        }
        guard chmod(root, 0o700) == 0 else { throw Self.writeFailure(root, errno) }
        let caFile = root + "/tls/ca.pem"
        let certFile = root + "/tls/server.pem"
        let keyFile = root + "/tls/server-key.pem"
        if !fm.fileExists(atPath: certFile) || !fm.fileExists(atPath: keyFile) {
            var dnsNames = ["localhost"]
            var addresses = ["127.0.0.1", "::1"]
            for host in [
                configuration.listenHost, configuration.publicURL.flatMap { HTTPSEndpoint.parse(url: $0)?.host },
            ].compactMap({ $0 }) {
                if IPAddressText.isAddress(host) {
                    if !["0.0.0.0", "::"].contains(host) { addresses.append(host) }
                } else {
                    dnsNames.append(host)
                }
            }
            let certificates = try GatewayCertificates.generate(
                dnsNames: Array(Set(dnsNames)).sorted(),
                ipAddresses: Array(Set(addresses)).sorted()
            )
            try write(certificates.caCertificatePEM, to: caFile, mode: 0o644)
            try write(certificates.caKeyPEM, to: root + "/tls/ca-key.pem", mode: 0o600)
            try write(certificates.serverCertificatePEM, to: certFile, mode: 0o644)
            try write(certificates.serverKeyPEM, to: keyFile, mode: 0o600)
        }
        let credentialsFile = root + "/admin.credentials"
        var keyID = ""
        var secret = ""
        if let text = try? String(contentsOfFile: credentialsFile, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingWhitespace() }
                guard parts.count == 2 else { continue }
                if parts[0] == "aws_access_key_id" { keyID = parts[1] }
                if parts[0] == "aws_secret_access_key" { secret = parts[1] }
            }
        }
        if keyID.isEmpty || secret.isEmpty {
            keyID = "AKJG" + Random.alphanumeric(16).uppercased()
            secret = Random.alphanumeric(40)
            try write(
                "[jumpgate-admin]\naws_access_key_id = \(keyID)\naws_secret_access_key = \(secret)\n",
                to: credentialsFile,
                mode: 0o600
            )
        }
        return GatewayDataDirectory(
            caFile: caFile,
            credentialsFile: credentialsFile,
            serverCertificatePEM: try String(contentsOfFile: certFile, encoding: .utf8),
            serverKeyPEM: try String(contentsOfFile: keyFile, encoding: .utf8),
            adminAccessKeyID: keyID,
            adminSecret: secret
        )
    }

    /// The administrator's profile for the AWS tools: `region` (any works; the AWS CLI insists on one),
    /// `endpoint_url` and `ca_bundle`. Rewritten at every start (the port may change); holds no secret.
    static func writeClientConfig(root: String, url: String, caFile: String?, region: String) throws {
        func absolute(_ path: String) -> String {
            path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        }
        let root = absolute(root)
        var text = "# Written by jumpgate server at each start. Use with:\n"
        text += "#   export AWS_CONFIG_FILE=\(root)/aws.config AWS_SHARED_CREDENTIALS_FILE=\(root)/admin.credentials"
        text += " AWS_PROFILE=jumpgate-admin\n"
        text += "[profile jumpgate-admin]\nregion = \(region)\nendpoint_url = \(url)\n"
        if let caFile { text += "ca_bundle = \(absolute(caFile))\n" }
        try Self.write(text, to: root + "/aws.config", mode: 0o644)
    }

    static func writeFailure(_ path: String, _ code: Int32) -> GatewayStartError {
        GatewayStartError(
            "cannot write \(path): \(String(cString: strerror(code)).lowercased()); check the data directory's "
                + "permissions and free space, or give another --data-dir"
        )
    }

    static func write(_ text: String, to path: String, mode: Int) throws {
        // Create with the final mode so a secret is never readable by others, even briefly.
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode_t(mode))
        guard fd >= 0 else { throw GatewayDataDirectory.writeFailure(path, errno) }
        defer { close(fd) }
        fchmod(fd, mode_t(mode))
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            guard n > 0 else { throw GatewayDataDirectory.writeFailure(path, errno) }
            offset += n
        }
    }
}

public struct GatewayStartError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

enum IPAddressText {
    static func isAddress(_ host: String) -> Bool {
        host.contains(":") || host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
    }
}
