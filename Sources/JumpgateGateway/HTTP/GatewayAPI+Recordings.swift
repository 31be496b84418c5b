import JumpgateAccess
import JumpgateWire
import NIOCore

/// `GetSessionRecording` (`JumpgateAdmin.GetSessionRecording`, the action `jumpgate:GetSessionRecording` on
/// the session's ARN): a shell or command session's recording, for `jumpgate sessions get-recording` and
/// `sessions replay`. Reading a recording is an action of its own, never implied by owning the session or
/// by DescribeSessions, and every call is audited (allowed or refused).
extension GatewayAPI {
    func getSessionRecording(
        _ input: JSONValue,
        call: inout APICall,
        on eventLoop: any EventLoop
    ) throws(APIError) -> EventLoopFuture<JSONValue> {
        let id = try Self.string(input, "SessionId", maxLength: 96)
        call.sessionID = id
        call.target = self.state.session(id: id)?.target ?? ""
        try self.authorize(&call, "jumpgate:GetSessionRecording", [RequestedResource([self.resources.session(id)])])
        guard let record = self.state.recording(sessionID: id) else {
            throw APIError(
                400,
                "DoesNotExistException",
                "Session \(id) has no recording: only shell and command sessions are recorded, while the gateway "
                    + "records (jumpgate server --recordings), and recordings are deleted after --recording-retention."
            )
        }
        let state = self.state
        return eventLoop.makeFutureWithTask {
            let content = try await state.recordingContent(sessionID: id)
            return [
                "SessionId": .string(id), "Complete": .bool(record.complete), "Truncated": .bool(record.truncated),
                "Bytes": .integer(Int64(content.count)), "Sha256": .string(record.sha256),
                "Recording": .string(String(decoding: content, as: UTF8.self)),
            ]
        }.flatMapErrorThrowing { error in
            throw APIError(500, "InternalServerError", "The recording of \(id) cannot be read: \(error)")
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
