import FoundationEssentials
import JumpgateAccess
import JumpgateWire
import NIOCore

/// `GetSessionRecording` (`JumpgateAdmin.GetSessionRecording`, the action `jumpgate:GetSessionRecording` on
/// the session's ARN): a page of a shell or command session's recording, for `jumpgate sessions
/// get-recording` and `sessions replay`. Reading a recording is an action of its own, never implied by
/// owning the session or by DescribeSessions, and every call is audited (allowed or refused).
///
/// Input: `SessionId`, `Offset` (default 0). Output: `Content` (base64 of up to ``recordingPageBytes``
/// from the offset: the recording's exact bytes, so a file made of the pages has the audited SHA-256),
/// `Offset`, `NextOffset` (absent on the last page), `Bytes` (the length stored), `Complete`, `Truncated`,
/// `Sha256`.
extension GatewayAPI {
    static let recordingPageBytes = 2 << 20

    func getSessionRecording(
        _ input: JSONValue,
        call: inout APICall,
        on eventLoop: any EventLoop
    ) throws(APIError) -> EventLoopFuture<JSONValue> {
        let id = try Self.string(input, "SessionId", maxLength: 96)
        call.sessionID = id
        call.target = self.state.session(id: id)?.target ?? ""
        try self.authorize(&call, "jumpgate:GetSessionRecording", [RequestedResource([self.resources.session(id)])])
        let offset = input["Offset"]?.int64Value ?? 0
        guard let record = self.state.recording(sessionID: id) else {
            throw APIError(
                400,
                "DoesNotExistException",
                "Session \(id) has no recording: only shell and command sessions are recorded, while the gateway "
                    + "records (jumpgate server --recordings), and recordings are deleted after --recording-retention."
            )
        }
        guard record.length > 0 else {
            throw APIError(
                400,
                "DoesNotExistException",
                "The agent of session \(id) has delivered none of its recording"
                    + (record.complete
                        ? ": the session recorded nothing."
                        : " yet: the session was refused before its program started, or its agent has not reconnected since.")
            )
        }
        guard (0..<record.length).contains(offset) else {
            throw APIError(400, "ValidationException", "Offset must be from 0 to \(record.length - 1).")
        }
        let state = self.state
        return eventLoop.makeFutureWithTask { () async throws(APIError) -> JSONValue in
            let page: [UInt8]
            do {
                // Never past the length this answer reports (a piece may be landing meanwhile).
                let wanted = Int(min(Int64(Self.recordingPageBytes), record.length - offset))
                page = try await state.recordingContent(sessionID: id, from: offset, maxBytes: wanted)
            } catch {
                throw APIError(500, "InternalServerError", "The recording of \(id) cannot be read: \(error)")
            }
            var members: [(key: String, value: JSONValue)] = [
                ("SessionId", .string(id)), ("Offset", .integer(offset)),
                ("Content", .string(Data(page).base64EncodedString())), ("Bytes", .integer(record.length)),
                ("Complete", .bool(record.complete)), ("Truncated", .bool(record.truncated)),
                ("Sha256", .string(record.sha256)),
            ]
            let next = offset + Int64(page.count)
            if next < record.length, !page.isEmpty { members.append(("NextOffset", .integer(next))) }
            return .object(members)
        }
    }

    /// The recording's state in DescribeSessions (Jumpgate's own field), for a recorded session.
    func recordingJSON(_ sessionID: String) -> JSONValue? {
        guard let record = self.state.recording(sessionID: sessionID) else { return nil }
        return [
            "Bytes": .integer(record.length), "Complete": .bool(record.complete), "Truncated": .bool(record.truncated),
        ]
    }
}
