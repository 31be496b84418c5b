import Crypto
import FoundationEssentials
import JumpgateNIO
import JumpgateWire
import NIOSSL
import SwiftASN1
import X509

/// The agent's identity on the relay-blind path (docs/BLIND-RELAY.md): a P-256 key and a self-signed
/// certificate made when the process starts, never written to disk. Its SHA-256 goes to the gateway on
/// the control channel, and from there to each client in StartSession's answer; the client pins it.
/// The trust is the gateway's, as for everything else the client learns from it: what this takes away
/// is the gateway's sight of the bytes, and with it the need to trust its host's memory and disks.
struct BlindIdentity: Sendable {
    let context: NIOSSLContext
    /// SHA-256 of the certificate's DER, in lower-case hex.
    let certificateSHA256: String

    static func make(now: Date = Date()) throws -> BlindIdentity {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Jumpgate")
            CommonName("Jumpgate agent (relay-blind path)")
        }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
            },
            issuerPrivateKey: .init(key)
        )
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        let der = serializer.serializedBytes
        return BlindIdentity(
            context: try JumpgateTLS.blindServerContext(certificateDER: der, keyPEM: key.pemRepresentation),
            certificateSHA256: SigV4.hexSHA256(der)
        )
    }

    /// This side's ticket for a session whose start offered the blind path (`inputs.jumpgateBlindPath`):
    /// nil when it did not, or when what it sent is not a token and a hash.
    func ticket(document: JSONValue) -> BlindTicket? {
        let offer = document["inputs"]?["jumpgateBlindPath"]
        guard let token = offer?["pairingToken"]?.stringValue, let hash = offer?["clientSecretSHA256"]?.stringValue
        else { return nil }
        return self.ticket(pairingToken: token, clientSecretSHA256: hash)
    }

    /// This side's ticket for a session offered the blind path again after a break: the agent's half in
    /// its data-channel token answer (`<JumpgateBlindPath>`), nil when the answer has none.
    func ticket(tokenReply xml: String) -> BlindTicket? {
        guard let token = Self.element("PairingToken", in: xml), let hash = Self.element("ClientSecretSHA256", in: xml)
        else { return nil }
        return self.ticket(pairingToken: token, clientSecretSHA256: hash)
    }

    private func ticket(pairingToken token: String, clientSecretSHA256 hash: String) -> BlindTicket? {
        guard token.count == PairingLine.tokenLength, hash.count == 64, hash.allSatisfy(\.isHexDigit) else {
            return nil
        }
        return BlindTicket(pairingToken: token, side: .agent(tls: self.context, clientSecretSHA256: hash.lowercased()))
    }

    private static func element(_ name: String, in xml: String) -> String? {
        guard let start = xml.firstRange(of: "<\(name)>"), let end = xml.firstRange(of: "</\(name)>"),
            start.upperBound <= end.lowerBound
        else { return nil }
        return String(xml[start.upperBound..<end.lowerBound])
    }
}
