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

    /// A new offer: two pairing tokens and a client secret, 256-bit each.
    init(certificateSHA256: String) {
        self.clientToken = Random.token()
        self.agentToken = Random.token()
        self.clientSecret = Random.token()
        self.agentCertificateSHA256 = certificateSHA256
    }

    /// The client's part, in StartSession's answer (a Jumpgate field; AWS's CLI drops it).
    var clientJSON: JSONValue { self.half(.client).clientJSON ?? [:] }

    /// The agent's part, in the session's start message (`inputs.jumpgateBlindPath`).
    var agentJSON: JSONValue {
        ["pairingToken": .string(self.agentToken), "clientSecretSHA256": .string(tokenHash(self.clientSecret))]
    }
}

/// What one side of an offer is told: the client its token, the secret and the agent's certificate hash;
/// the agent its token and the secret's hash.
enum BlindHalf: Sendable, Equatable {
    case client(token: String, secret: String, certificateSHA256: String)
    case agent(token: String, clientSecretSHA256: String)

    /// The client's half, in ResumeSession's answer (as StartSession's `JumpgateBlindPath`).
    var clientJSON: JSONValue? {
        guard case .client(let token, let secret, let certificate) = self else { return nil }
        return [
            "PairingToken": .string(token), "ClientSecret": .string(secret),
            "AgentCertificateSHA256": .string(certificate),
        ]
    }

    /// The agent's half, in its data-channel token answer (tokens and hashes are base64url and hex: nothing
    /// to escape).
    var agentXML: String? {
        guard case .agent(let token, let hash) = self else { return nil }
        return "<JumpgateBlindPath><PairingToken>\(token)</PairingToken>"
            + "<ClientSecretSHA256>\(hash)</ClientSecretSHA256></JumpgateBlindPath>"
    }
}

extension BlindOffer {
    func half(_ role: PairingLine.Role) -> BlindHalf {
        switch role {
        case .client:
            .client(token: self.clientToken, secret: self.clientSecret, certificateSHA256: self.agentCertificateSHA256)
        case .agent: .agent(token: self.agentToken, clientSecretSHA256: tokenHash(self.clientSecret))
        }
    }
}

/// The half of a re-offer kept for the side that has not asked yet, until its window ends.
struct KeptHalf: Sendable {
    var role: PairingLine.Role
    var half: BlindHalf
    var deadline: NIODeadline
}

/// The relay-blind path's state: which agents serve it (their certificate, from the control channel's
/// opening frame), and the pairings offered and waiting.
extension GatewayState {
    /// How long the two sides have to pair once StartSession offered it.
    static let pairingWindow: TimeAmount = .seconds(10)

    /// Notes the certificate hash an agent's control channel announced (nil: it serves no blind path).
    func setBlindCertificate(instanceID: String, sha256: String?) {
        let valid = sha256.flatMap(Self.validCertificateHash)
        self.storage.withLockedValue { $0.blindCertificates[instanceID] = valid }
    }

    /// Offers `sessionID` the blind path if the gateway carries it and its agent serves it; the tokens and
    /// the secret go to the two sides, the table keeps only their hashes.
    func offerBlindPath(sessionID: String, instanceID: String) -> BlindOffer? {
        guard self.blindRelay,
            let certificate = self.storage.withLockedValue({ $0.blindCertificates[instanceID] })
        else { return nil }
        let offer = BlindOffer(certificateSHA256: certificate)
        self.register(offer, sessionID: sessionID, deadline: .now() + Self.pairingWindow)?.close(promise: nil)
        return offer
    }

    /// Puts `offer`'s token hashes in the pairing table until `deadline`; returns the side an earlier offer
    /// for the session kept waiting, for the caller to close.
    private func register(_ offer: BlindOffer, sessionID: String, deadline: NIODeadline) -> (any Channel)? {
        self.pairings.withLockedValue {
            $0.offer(
                sessionID: sessionID,
                clientTokenHash: tokenHash(offer.clientToken),
                agentTokenHash: tokenHash(offer.agentToken),
                deadline: deadline
            )
        }?.channel
    }

    /// After a break: the blind path again for `side` of `sessionID`, which was on a pair and asks as it
    /// resumes (the client in ResumeSession, the agent in its data-channel token request). The first side
    /// to ask gets a new offer, and the other side's half is kept for it for the pairing window; the
    /// second collects it (``BlindReoffer``). A client is offered it only while the agent's control channel
    /// is connected (or the agent asked first). Returns the asking side's half, if any.
    ///
    /// `certificateSHA256` is the agent's own certificate hash, from its request (signed by the instance);
    /// ignored from a client. It is used for this offer only, when the gateway knows none (a restarted
    /// gateway, before the agent's control channel is back), and never recorded. A pair still open when a
    /// new offer is made is stale (the asking side left it) and is closed, so that the other side resumes
    /// and asks too.
    ///
    /// Locks: `keptHalves`, then inside it `pairings`, `storage` (the control channel's look-up) and the
    /// relay's; nothing takes them the other way (``agentLossSweep(policy:)`` reads `pairings` before it
    /// takes `storage`).
    func reofferBlindPath(
        sessionID: String,
        instanceID: String,
        side: PairingLine.Role,
        certificateSHA256: String?
    ) -> (half: BlindHalf?, decision: BlindReoffer.Decision) {
        let known = self.storage.withLockedValue { $0.blindCertificates[instanceID] }
        let claimed = side == .agent ? certificateSHA256.flatMap(Self.validCertificateHash) : nil
        let certificate = known ?? claimed
        let relay = self.relay(sessionID: sessionID)
        let open = relay.map { !$0.isTerminated } ?? false
        let port = self.session(id: sessionID).map {
            (try? self.document($0.documentName))?.parsed.sessionType == "Port"
        }
        let now = NIODeadline.now()
        // Made before the lock; used only if the decision is a new offer.
        let candidate = certificate.map { BlindOffer(certificateSHA256: $0) }
        var closing: [any Channel] = []
        let outcome = self.keptHalves.withLockedValue { kept -> (BlindHalf?, BlindReoffer.Decision) in
            let half = kept[sessionID].flatMap { $0.role == side && $0.deadline >= now ? $0.half : nil }
            let decision = BlindReoffer.decide(
                relayOn: self.blindRelay,
                sessionOpen: open,
                portSession: port == true,
                partnerOnWebSocket: relay?.isOnWebSocket(side == .client ? .agent : .client) ?? false,
                halfKept: half != nil,
                agentReachable: side == .agent || self.controlChannel(instanceID: instanceID) != nil,
                certificateKnown: candidate != nil
            )
            switch decision {
            case .collect:
                kept[sessionID] = nil
                return (half, decision)
            case .offer:
                guard let offer = candidate else { return (nil, .decline(.noCertificate)) }
                if let replaced = self.register(offer, sessionID: sessionID, deadline: now + Self.pairingWindow) {
                    closing.append(replaced)
                }
                if let stale = relay?.takePair() { closing += [stale.client, stale.agent] }
                let other: PairingLine.Role = side == .client ? .agent : .client
                kept[sessionID] = KeptHalf(role: other, half: offer.half(other), deadline: now + Self.pairingWindow)
                return (offer.half(side), decision)
            case .decline:
                kept[sessionID] = nil
                return (nil, decision)
            }
        }
        for channel in closing { channel.close(promise: nil) }
        return outcome
    }

    static func validCertificateHash(_ text: String) -> String? {
        text.count == 64 && text.allSatisfy(\.isHexDigit) ? text.lowercased() : nil
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

    /// A side waiting for its partner closed (an agent that died while it waited, say): the offer can no
    /// longer pair, so the half kept for the other side is dropped with it, and that side, if it already
    /// holds its half, is refused at once when it arrives (and takes the WebSocket path). A side that had
    /// not collected its half asks afresh: declined while the agent's control channel is down (it then
    /// hears on the WebSocket path what became of the agent), or a new offer while it is up.
    ///
    /// Locks: `keptHalves`, then inside it `pairings`, as ``reofferBlindPath(sessionID:instanceID:side:certificateSHA256:)``;
    /// neither is taken while `storage` is held.
    func pairingDeparted(_ channel: any Channel, sessionID: String) {
        self.keptHalves.withLockedValue { kept in
            let left = self.pairings.withLockedValue {
                $0.departed(PairingConnection(channel: channel), sessionID: sessionID)
            }
            if left { kept[sessionID] = nil }
        }
    }

    /// The session will not pair (a side took the WebSocket path, or it ended): the side that waits is
    /// closed, and goes to the WebSocket path too.
    func withdrawBlindPath(sessionID: String) {
        self.keptHalves.withLockedValue { $0[sessionID] = nil }
        self.pairings.withLockedValue { $0.withdraw(sessionID: sessionID) }?.channel.close(promise: nil)
    }

    /// Ends the offers past their window (the once-a-second sweep): each waiting side is closed.
    func expirePairings(now: NIODeadline = .now()) {
        self.keptHalves.withLockedValue { kept in
            guard !kept.isEmpty else { return }
            kept = kept.filter { $0.value.deadline >= now }
        }
        let ended = self.pairings.withLockedValue { table -> [PairingTable<PairingConnection>.Ended] in
            guard let next = table.nextDeadline, next < now else { return [] }
            return table.expire(now: now)
        }
        for offer in ended { offer.waiting?.channel.close(promise: nil) }
    }
}
