import JumpgateNIO
import JumpgateWire
import NIOConcurrencyHelpers
import NIOCore

/// A pairing connection, as the pairing table knows it: compared by identity.
struct PairingConnection: Hashable, Sendable {
    let channel: any Channel
    static func == (a: PairingConnection, b: PairingConnection) -> Bool { a.channel === b.channel }
    func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self.channel)) }
}

/// What StartSession hands out for a session offered the relay-blind path (docs/BLIND-RELAY.md).
struct BlindOffer: Sendable {
    var clientToken: String
    var agentToken: String
    var clientSecret: String
    var agentCertificateSHA256: String

    /// The client's part, in StartSession's answer (a Jumpgate field; AWS's CLI drops it).
    var clientJSON: JSONValue {
        [
            "PairingToken": .string(self.clientToken), "ClientSecret": .string(self.clientSecret),
            "AgentCertificateSHA256": .string(self.agentCertificateSHA256),
        ]
    }

    /// The agent's part, in the session's start message (`inputs.jumpgateBlindPath`).
    var agentJSON: JSONValue {
        ["pairingToken": .string(self.agentToken), "clientSecretSHA256": .string(tokenHash(self.clientSecret))]
    }
}

/// The relay-blind path's state: which agents serve it (their certificate, from the control channel's
/// opening frame), and the pairings offered and waiting.
extension GatewayState {
    /// How long the two sides have to pair once StartSession offered it.
    static let pairingWindow: TimeAmount = .seconds(10)

    /// Notes the certificate hash an agent's control channel announced (nil: it serves no blind path).
    func setBlindCertificate(instanceID: String, sha256: String?) {
        let valid = sha256.flatMap { $0.count == 64 && $0.allSatisfy(\.isHexDigit) ? $0.lowercased() : nil }
        self.storage.withLockedValue { $0.blindCertificates[instanceID] = valid }
    }

    /// Offers `sessionID` the blind path if the gateway carries it and its agent serves it; the tokens and
    /// the secret go to the two sides, the table keeps only their hashes.
    func offerBlindPath(sessionID: String, instanceID: String) -> BlindOffer? {
        guard self.blindRelay,
            let certificate = self.storage.withLockedValue({ $0.blindCertificates[instanceID] })
        else { return nil }
        let offer = BlindOffer(
            clientToken: Random.token(),
            agentToken: Random.token(),
            clientSecret: Random.token(),
            agentCertificateSHA256: certificate
        )
        let replaced = self.pairings.withLockedValue {
            $0.offer(
                sessionID: sessionID,
                clientTokenHash: tokenHash(offer.clientToken),
                agentTokenHash: tokenHash(offer.agentToken),
                deadline: .now() + Self.pairingWindow
            )
        }
        replaced?.channel.close(promise: nil)
        return offer
    }

    /// A pairing line arrived on `channel`.
    func pairingArrived(_ line: PairingLine, on channel: any Channel) -> PairingTable<PairingConnection>.Arrival {
        self.pairings.withLockedValue {
            $0.arrived(
                tokenHash: tokenHash(line.token),
                role: line.role,
                connection: PairingConnection(channel: channel),
                now: .now()
            )
        }
    }

    /// A side waiting for its partner closed.
    func pairingDeparted(_ channel: any Channel, sessionID: String) {
        self.pairings.withLockedValue { $0.departed(PairingConnection(channel: channel), sessionID: sessionID) }
    }

    /// The session will not pair (a side took the WebSocket path, or it ended): the side that waits is
    /// closed, and goes to the WebSocket path too.
    func withdrawBlindPath(sessionID: String) {
        self.pairings.withLockedValue { $0.withdraw(sessionID: sessionID) }?.channel.close(promise: nil)
    }

    /// Ends the offers past their window (the once-a-second sweep): each waiting side is closed.
    func expirePairings(now: NIODeadline = .now()) {
        let ended = self.pairings.withLockedValue { table -> [PairingTable<PairingConnection>.Ended] in
            guard let next = table.nextDeadline, next < now else { return [] }
            return table.expire(now: now)
        }
        for offer in ended { offer.waiting?.channel.close(promise: nil) }
    }
}
