import NIOCore

/// The gateway's relay-blind pairings (docs/BLIND-RELAY.md): for each session offered the blind path, one
/// single-use token per side, and the side that arrived first while it waits for the other. Pure: the
/// gateway passes in token hashes, connections and the time, and carries out what comes back.
///
/// A token is bound to its session and its role, and used up by its first arrival whatever the outcome:
/// a token read off the wire by someone else can win the race for a side, never a second connection. An
/// offer ends when both sides arrived (paired), at its deadline, or when the session withdraws it; a new
/// offer for the same session (a re-pairing after a break) replaces the old one and its waiting side.
public struct PairingTable<Connection: Hashable & Sendable>: Sendable {
    public typealias Role = PairingLine.Role

    /// Why an arrival was refused; each is counted and audited by the gateway.
    public enum Refusal: String, Error, Sendable, Hashable, CaseIterable, CustomStringConvertible {
        /// No offer has this token: never issued, already used, or its offer is over.
        case unknownToken = "PairingUnknownToken"
        /// The token is this session's token for the other side.
        case wrongRole = "PairingWrongRole"
        /// The offer's deadline passed (the sides go to the WebSocket path).
        case expired = "PairingExpired"
        /// The other side arrived first and closed its connection before this one came: nobody is left to
        /// pair with (the sides go to the WebSocket path).
        case partnerLeft = "PairingPartnerLeft"

        public var description: String {
            switch self {
            case .unknownToken: "the pairing token is not valid (never issued, already used, or its offer ended)"
            case .wrongRole: "the pairing token belongs to the session's other side"
            case .expired: "the pairing offer expired before both sides arrived"
            case .partnerLeft: "the other side of the pairing left before this one arrived"
            }
        }
    }

    public enum Arrival: Sendable, Equatable {
        /// The first side: it waits for the other.
        case wait(sessionID: String)
        /// The second side: the two are paired, and the offer is over.
        case paired(sessionID: String, partner: Connection)
        case refused(Refusal)
    }

    /// An offer that ended without a pair, and the side that was waiting, if one was.
    public struct Ended: Sendable, Equatable {
        public var sessionID: String
        public var waiting: Connection?

        public init(sessionID: String, waiting: Connection?) {
            self.sessionID = sessionID
            self.waiting = waiting
        }
    }

    struct Offer: Sendable {
        var tokens: [Role: String]
        var deadline: NIODeadline
        var waiting: (role: Role, connection: Connection)?
        /// The side whose waiting connection closed: the offer can no longer pair.
        var left: Role?
    }

    private var offers: [String: Offer] = [:]
    /// Each unused token hash, to its session and role.
    private var tokens: [String: (sessionID: String, role: Role)] = [:]

    public init() {}

    public var count: Int { self.offers.count }

    /// Offers `sessionID` the blind path until `deadline`, with one token hash per side. An earlier offer
    /// for the session ends; the side it kept waiting, if any, is returned to be closed.
    public mutating func offer(
        sessionID: String,
        clientTokenHash: String,
        agentTokenHash: String,
        deadline: NIODeadline
    ) -> Connection? {
        let replaced = self.withdraw(sessionID: sessionID)
        self.offers[sessionID] = Offer(tokens: [.client: clientTokenHash, .agent: agentTokenHash], deadline: deadline)
        self.tokens[clientTokenHash] = (sessionID, .client)
        self.tokens[agentTokenHash] = (sessionID, .agent)
        return replaced
    }

    /// A pairing line arrived on `connection`.
    public mutating func arrived(
        tokenHash: String,
        role: Role,
        connection: Connection,
        now: NIODeadline
    ) -> Arrival {
        guard let (sessionID, tokenRole) = self.tokens.removeValue(forKey: tokenHash),
            var offer = self.offers[sessionID]
        else { return .refused(.unknownToken) }
        offer.tokens[tokenRole] = nil
        self.offers[sessionID] = offer
        guard tokenRole == role else { return .refused(.wrongRole) }
        guard now <= offer.deadline else { return .refused(.expired) }
        if offer.left == role.other {
            self.end(sessionID)
            return .refused(.partnerLeft)
        }
        if let waiting = offer.waiting, waiting.role == role.other {
            self.end(sessionID)
            return .paired(sessionID: sessionID, partner: waiting.connection)
        }
        offer.waiting = (role, connection)
        self.offers[sessionID] = offer
        return .wait(sessionID: sessionID)
    }

    /// The waiting side's connection closed before its partner came: the offer can no longer pair. Its
    /// token stays used; the other side's stays known until the deadline, so that the other side, when it
    /// arrives, is told at once that its partner left (``Refusal/partnerLeft``) instead of waiting for
    /// nobody. Returns whether `connection` was the offer's waiting side.
    @discardableResult
    public mutating func departed(_ connection: Connection, sessionID: String) -> Bool {
        guard var offer = self.offers[sessionID], let waiting = offer.waiting, waiting.connection == connection
        else { return false }
        offer.waiting = nil
        offer.left = waiting.role
        self.offers[sessionID] = offer
        return true
    }

    /// Ends the offers whose deadline passed.
    public mutating func expire(now: NIODeadline) -> [Ended] {
        let due = self.offers.filter { $0.value.deadline < now }
        return due.keys.sorted().map { Ended(sessionID: $0, waiting: self.withdraw(sessionID: $0)) }
    }

    /// Ends the session's offer (the session ended, or went to the WebSocket path); returns the side that
    /// was waiting, to be closed.
    @discardableResult
    public mutating func withdraw(sessionID: String) -> Connection? {
        let waiting = self.offers[sessionID]?.waiting?.connection
        self.end(sessionID)
        return waiting
    }

    /// The sessions whose `role` side is waiting for its partner now.
    public func sessionsWaiting(_ role: Role) -> Set<String> {
        Set(self.offers.compactMap { $0.value.waiting?.role == role ? $0.key : nil })
    }

    /// The earliest deadline of an open offer: when ``expire(now:)`` has something to do.
    public var nextDeadline: NIODeadline? { self.offers.values.map(\.deadline).min() }

    private mutating func end(_ sessionID: String) {
        guard let offer = self.offers.removeValue(forKey: sessionID) else { return }
        for hash in offer.tokens.values { self.tokens[hash] = nil }
    }
}
