import FoundationEssentials
import JumpgateWire

extension SSMClient {
    /// A session's whole recording, page by page (`GetSessionRecording`, docs/SESSIONS.md): its exact
    /// bytes, and the last page's answer (`Complete`, `Truncated`, `Sha256`).
    public func sessionRecording(_ sessionID: String) async throws -> (bytes: [UInt8], answer: JSONValue) {
        var bytes: [UInt8] = []
        var offset: Int64 = 0
        // Each page moves on (the gateway never answers an empty one): a bounded number of them.
        for _ in 0..<100_000 {
            let answer = try await self.call(
                "GetSessionRecording",
                ["SessionId": .string(sessionID), "Offset": .integer(offset)],
                api: "JumpgateAdmin"
            )
            guard let content = answer["Content"]?.stringValue, let page = Data(base64Encoded: content) else {
                throw ClientError("The gateway's answer holds no recording content.")
            }
            bytes += page
            guard let next = answer["NextOffset"]?.int64Value else {
                if let total = answer["Bytes"]?.int64Value, Int64(bytes.count) != total {
                    throw ClientError(
                        "The gateway's pages hold \(bytes.count) bytes of the recording's \(total): retry; if it persists, the store is damaged (see the gateway's log)."
                    )
                }
                return (bytes, answer)
            }
            guard next > offset else { throw ClientError("The gateway's recording pages do not move on.") }
            offset = next
        }
        throw ClientError("The recording has too many pages.")
    }
}
