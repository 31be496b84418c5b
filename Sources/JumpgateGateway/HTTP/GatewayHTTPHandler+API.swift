import JumpgateAccess
import JumpgateNIO
import JumpgateWire
import Logging
import NIOCore
import NIOHTTP1

/// An API call (`POST /`): the SSM operations and Jumpgate's administrative ones, authenticated, parsed,
/// authorised and carried out; what the audit record needs is gathered on the way.
extension GatewayHTTPHandler {
    func apiCall(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        path: String,
        query: String,
        audit: inout PendingAudit
    ) throws(APIError) -> GatewayAPI.Answer {
        let target = head.headers.first(name: "X-Amz-Target") ?? ""
        let admin = target.hasPrefix(GatewayAPI.adminPrefix)
        guard target.hasPrefix("AmazonSSM.") || admin else {
            throw APIError(
                400,
                "UnknownOperationException",
                "The X-Amz-Target header must name an AmazonSSM or JumpgateAdmin operation."
            )
        }
        let operation = String(target.drop { $0 != "." }.dropFirst())
        let bytes = Array(self.body.readableBytesView)
        // Authenticate before looking at the body (RegisterManagedInstance is unsigned: the activation
        // code is its credential).
        var caller: (Caller, String)?
        if operation != "RegisterManagedInstance" || admin {
            // Instances' keys verify too, so that an agent's credentials on the user API are refused as
            // what they are (AccessDenied, audited with the instance's id), not as unknown.
            let identity = try self.verify(
                head: head,
                path: path,
                query: query,
                service: "ssm",
                signers: .usersOrInstances,
                body: bytes
            )
            guard let known = self.state.caller(accessKeyID: identity.accessKeyID) else {
                // A valid signature by an agent: recorded with its id (authenticated, so not a flood risk).
                audit.accessKeyID = identity.accessKeyID
                throw APIError(
                    400,
                    "AccessDeniedException",
                    "Managed-instance credentials cannot call \(operation)."
                )
            }
            caller = (known, identity.accessKeyID)
            audit.user = known.user
            audit.accessKeyID = identity.accessKeyID
        }
        let input: JSONValue
        do {
            input = bytes.isEmpty ? [:] : try JSONValue(parsing: bytes)
        } catch {
            throw APIError(400, "SerializationException", "The request body is not valid JSON: \(error)")
        }
        guard case .object = input else {
            throw APIError(400, "SerializationException", "The request body must be a JSON object.")
        }
        audit.input = input
        guard let (known, accessKeyID) = caller else {
            let answer = try self.api.register(input, source: self.source)
            audit.target = answer["InstanceId"]?.stringValue ?? ""
            self.logger.info(
                "agent registered",
                metadata: [
                    "instance": "\(answer["InstanceId"]?.stringValue ?? "")",
                    "activation": "\(input["ActivationId"]?.stringValue ?? "")", "source": "\(self.source)",
                ]
            )
            return .now(answer)
        }
        var call = APICall(caller: known, accessKeyID: accessKeyID, source: self.source, now: self.state.clock())
        defer { audit.call = call }
        let answer =
            admin
            ? try self.api.handleAdmin(operation: operation, input: input, call: &call, on: context.eventLoop)
            : try self.api.handle(operation: operation, input: input, call: &call, on: context.eventLoop)
        var metadata: Logger.Metadata = ["operation": "\(operation)", "user": "\(known.user.name)"]
        if !call.target.isEmpty { metadata["target"] = "\(call.target)" }
        if !call.sessionID.isEmpty { metadata["jumpgate.session_id"] = "\(call.sessionID)" }
        if let parameters = input["Parameters"],
            let port = parameters["portNumber"]?.arrayValue?.first?.stringValue
        {
            let host = parameters["host"]?.arrayValue?.first?.stringValue ?? "localhost"
            metadata["destination"] = "\(HostPort.text(host, port))"
        }
        self.logger.info("api call", metadata: metadata)
        return answer
    }
}
