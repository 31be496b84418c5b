import CoreMetrics
import JumpgateWire
import NIOCore
import NIOHTTP1

/// `POST /v1/recordings/<instance-id>/<session-id>?offset=N&final=true|false`, signed by the instance: a
/// piece of a session's recording from its agent (the body: the recording's bytes from `offset`). Answered
/// once the piece is in the store (`{"Length": n, "Complete": b}`), so the agent may forget it; 409 with
/// the length held when the offset is not where the recording ends.
extension GatewayHTTPHandler {
    func recordingUpload(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        path: String,
        query: String
    ) throws(APIError) {
        let body = Array(self.body.readableBytesView)
        let parts = path.dropFirst("/v1/recordings/".count).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...96).contains(parts[1].count) else {
            throw APIError(404, "NotFound", "No such endpoint: POST \(path.prefix(200)).")
        }
        let (instanceID, sessionID) = (String(parts[0]), String(parts[1]))
        try self.verifyInstance(instanceID, head: head, path: path, query: query, body: body)
        var (offset, final, truncated): (Int64?, Bool?, Bool) = (nil, nil, false)
        for (name, value) in SigV4.queryItems(query) {
            switch name {
            case "offset": offset = Int64(value).flatMap { $0 >= 0 ? $0 : nil }
            case "final": final = value == "true" ? true : value == "false" ? false : nil
            case "truncated": truncated = value == "true"
            default: break
            }
        }
        guard let offset, let final else {
            throw APIError(400, "ValidationException", "Give offset (a byte count) and final (true or false).")
        }
        let (state, source) = (self.state, self.source)
        let (count, eventLoop) = (body.count, context.eventLoop)
        let stored = state.appendRecording(
            instanceID: instanceID,
            sessionID: sessionID,
            offset: offset,
            bytes: body,
            final: final,
            truncated: truncated,
            on: context.eventLoop
        ).flatMap { record, completed in
            // The pieces themselves were committed; the recording's row (complete, truncated) is on disk before
            // the agent may forget its file: after a final piece, and before a 413.
            final
                ? state.flush(on: eventLoop).map { (record, completed) }
                : eventLoop.makeSucceededFuture((record, completed))
        }.flatMapError { error in
            guard let refusal = error as? GatewayState.RecordingRefusal, refusal.status == 413 else {
                return eventLoop.makeFailedFuture(error)
            }
            return state.flush(on: eventLoop).flatMapThrowing { throw refusal }
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        stored.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success(let (record, completed)):
                state.metrics.recordingBytes.increment(by: count)
                handler.sendJSON(
                    context: context,
                    head: head,
                    status: 200,
                    ["Length": .integer(record.length), "Complete": .bool(record.complete)]
                )
                if completed { Task { await state.sealRecording(sessionID: sessionID, source: source) } }
            case .failure(let refusal as GatewayState.RecordingRefusal):
                var answer: [(key: String, value: JSONValue)] = [
                    ("__type", .string(refusal.type)), ("message", .string(refusal.message)),
                ]
                if let length = refusal.length { answer.append(("Length", .integer(length))) }
                // The refusals that mean something (not "go on from there", not "busy"), once each.
                if refusal.status == 404 || refusal.status == 413 {
                    state.auditRecordingRefusal(refusal, sessionID: sessionID, instanceID: instanceID, source: source)
                }
                if refusal.status == 413 { Task { await state.sealRecording(sessionID: sessionID, source: source) } }
                handler.sendJSON(context: context, head: head, status: refusal.status, .object(answer))
            case .failure:
                handler.sendError(
                    context: context,
                    head: head,
                    APIError(503, "ServiceUnavailable", "The recording cannot be stored now; keep it and retry.")
                )
            }
        }
    }
}
