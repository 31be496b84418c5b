/// One-time tokens waiting for the WebSocket they open: the SHA-256 of each token, to the epoch second it
/// expires. Issuing one drops those already expired and, at ``limit``, the one that expires first. So a
/// session that lives for days on a flaky link (a token whose connection was cut before it arrived is never
/// used), or an agent asking for tokens without pause, makes the gateway hold at most ``limit`` per holder.
/// The newest token always works: an agent uses the one it asked for last.
enum PendingTokens {
    static let limit = 16

    static func issue(_ hash: String, expires: Int64, now: Int64, in tokens: inout [String: Int64]) {
        tokens = tokens.filter { $0.value >= now }
        while tokens.count >= Self.limit, let first = tokens.min(by: { $0.value < $1.value }) {
            tokens.removeValue(forKey: first.key)
        }
        tokens[hash] = expires
    }

    /// Whether `hash` was waiting and has not expired; it is used up either way.
    static func consume(_ hash: String, now: Int64, in tokens: inout [String: Int64]) -> Bool {
        guard let expires = tokens.removeValue(forKey: hash) else { return false }
        return expires >= now
    }
}
