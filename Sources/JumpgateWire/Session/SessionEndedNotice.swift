/// How the gateway tells a client whose session ended while the client was away what ended it: the data
/// channel refused with WebSocket close 1008 and "the session has ended: <reason>" (cut to the 123 bytes a
/// close reason holds), or ResumeSession's DoesNotExistException with the whole reason, "Session <id> has
/// ended: <reason>". A client already in its session resumes after the refusal and ends with the reason
/// ResumeSession gives, as if the gateway's channel_closed had reached it (exit status 2), instead of
/// reporting that the session "could not be resumed".
public enum SessionEndedNotice {
    static let marker = "has ended: "

    /// The data channel's refusal for `reason` (its full stop dropped: the client adds its own).
    public static func refusal(reason: String) -> String {
        "the session " + self.marker + self.withoutFullStop(reason)
    }

    /// ResumeSession's message for session `id`, ended for `reason`.
    public static func resumeMessage(sessionID id: String, reason: String) -> String {
        "Session \(id) " + self.marker + self.withoutFullStop(reason) + "."
    }

    /// The end reason in a refusal or a ResumeSession message made by the two above, as one sentence; nil
    /// for any other text (an empty reason included).
    public static func reason(in text: String) -> String? {
        let marker = Substring(self.marker)
        guard let start = text.indices.first(where: { text[$0...].hasPrefix(marker) }) else { return nil }
        let reason = self.withoutFullStop(String(text[start...].dropFirst(marker.count)))
        return reason.isEmpty ? nil : reason + "."
    }

    private static func withoutFullStop(_ text: String) -> String {
        text.hasSuffix(".") ? String(text.dropLast()) : text
    }
}
