import NIOCore

/// Who is checking a message. The official peers validate differently (spec §4), and Jumpgate follows
/// each so it accepts exactly what they would send and rejects exactly what they would drop.
public enum SSMValidationProfile: Sendable, Hashable {
    /// As the official plugin: start/pause_publication pass unchecked; otherwise MessageType, CreatedDate
    /// and, for a non-empty payload, the SHA-256 digest.
    case client
    /// As the official agent: MessageType and CreatedDate; the digest is never checked.
    case agent
    /// Jumpgate peers on the negotiated digest-free fast path: like `.client`, but an all-zero digest is
    /// accepted without hashing.
    case digestFree
}

extension SSMMessage {
    /// Checks what the receiving peer checks. A message that fails is dropped without an ack, as the
    /// official peers do.
    public func validate(_ profile: SSMValidationProfile) throws(WireError) {
        if profile != .agent, self.messageType == .startPublication || self.messageType == .pausePublication {
            return
        }
        guard self.createdDate != 0 else {
            throw WireError(.invalidMessage, "\(self.messageType) message has CreatedDate 0")
        }
        switch profile {
        case .agent:
            return
        case .client:
            break
        case .digestFree:
            if self.payloadDigest == .zero { return }
        }
        if self.payload.readableBytes != 0, !self.isDigestValid {
            throw WireError(
                .digestMismatch,
                "\(self.messageType) seq \(self.sequenceNumber): PayloadDigest does not match the payload"
            )
        }
    }
}
