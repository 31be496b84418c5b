import Crypto
import FoundationEssentials
import JumpgateWire
import SwiftASN1
import X509

/// The gateway's private CA and server certificate (DESIGN.md §5): created on first start so a new
/// gateway serves TLS with nothing configured; clients and agents trust `ca.pem`.
public struct GatewayCertificates: Sendable {
    public var caCertificatePEM: String
    public var caKeyPEM: String
    public var serverCertificatePEM: String
    public var serverKeyPEM: String

    /// Creates a P-256 CA (10 years) and a server certificate (2 years) for `dnsNames` and `ipAddresses`.
    public static func generate(
        dnsNames: [String],
        ipAddresses: [String],
        now: Date = Date()
    ) throws -> GatewayCertificates {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName {
            OrganizationName("Jumpgate")
            CommonName("Jumpgate gateway CA")
        }
        let caCertificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(caKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: caName,
            subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(caKey.publicKey))
            },
            issuerPrivateKey: .init(caKey)
        )

        let serverKey = P256.Signing.PrivateKey()
        var alternativeNames: [GeneralName] = dnsNames.map { .dnsName($0) }
        for address in ipAddresses {
            guard let bytes = IPAddressBytes.parse(address) else { continue }
            alternativeNames.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        let serverCertificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(serverKey.publicKey),
            notValidBefore: now.addingTimeInterval(-300),
            notValidAfter: now.addingTimeInterval(2 * 365 * 86400),
            issuer: caName,
            subject: try DistinguishedName {
                OrganizationName("Jumpgate")
                CommonName(dnsNames.first ?? "jumpgate")
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(alternativeNames)
                AuthorityKeyIdentifier(keyIdentifier: try caCertificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: .init(caKey)
        )
        return GatewayCertificates(
            caCertificatePEM: try caCertificate.serializeAsPEM().pemString,
            caKeyPEM: caKey.pemRepresentation,
            serverCertificatePEM: try serverCertificate.serializeAsPEM().pemString,
            serverKeyPEM: serverKey.pemRepresentation
        )
    }
}
