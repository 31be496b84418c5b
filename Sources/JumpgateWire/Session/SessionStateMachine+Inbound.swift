import NIOCore

extension SessionStateMachine {
    // MARK: what arrives on the data channel

    /// One binary WebSocket frame from the data channel: decoded, checked, and sent where it belongs.
    /// `withholdsOutput`: the stream table cannot take an `output` payload yet (basic mode, no local
    /// connection): it is neither delivered nor acknowledged, so the agent resends it, as the official
    /// plugin does.
    public mutating func frameReceived(
        _ frame: ByteBuffer,
        withholdsOutput: Bool,
        now: NIODeadline,
        into actions: inout [Action]
    ) {
        guard !self.isEnded else { return }
        let message: SSMMessage
        do {
            message = try SSMMessage(decoding: frame)
            try message.validate(self.validationProfile)
        } catch {
            return actions.append(.refused(.invalidMessage, "\(error)"))
        }
        switch message.messageType {
        case .outputStreamData, .inputStreamData:
            self.streamMessageReceived(message, withholdsOutput: withholdsOutput, now: now, into: &actions)
        case .acknowledge:
            self.acknowledgementReceived(message, now: now, into: &actions)
            self.endIfDelivered(now: now, into: &actions)
        case .channelClosed:
            let output = (try? ChannelClosedPayload(payload: message.payload))?.output ?? ""
            self.end(reason: output, byPeer: true, into: &actions)
        case .pausePublication:
            self.reliability.publicationPaused()
            actions.append(.notice(.publicationPaused))
        case .startPublication:
            let frames = self.reliability.publicationResumed(now: now)
            actions.append(.notice(.publicationResumed(resent: frames.count)))
            for frame in frames { actions.append(.write(frame)) }
            actions.append(.flush)
        case .jumpgateAgentStatus:
            guard !self.isAgent else { return actions.append(.refused(.unexpectedMessage, "\(message.messageType)")) }
            guard let status = try? AgentStatusPayload(payload: message.payload) else {
                return actions.append(.refused(.invalidPayload, "\(message.messageType)"))
            }
            actions.append(.agentStatus(status))
        default:
            actions.append(.refused(.unexpectedMessage, "\(message.messageType)"))
        }
    }

    mutating func streamMessageReceived(
        _ message: SSMMessage,
        withholdsOutput: Bool,
        now: NIODeadline,
        into actions: inout [Action]
    ) {
        guard message.sequenceNumber >= 0 else {
            return actions.append(.refused(.invalidMessage, "sequence number \(message.sequenceNumber)"))
        }
        var ready =
            self.negotiated != nil || message.payloadType.isHandshake || message.payloadType == .handshakeResponse
        if message.payloadType == .output, withholdsOutput { ready = false }
        switch self.reliability.streamMessageReceived(message, isReady: ready, now: now) {
        case .deliver(let acknowledgement):
            self.acknowledge(acknowledgement, into: &actions)
            self.process(message, now: now, into: &actions)
            while !self.isEnded, let (next, acknowledgement) = self.reliability.nextBufferedMessage(now: now) {
                self.acknowledge(acknowledgement, into: &actions)
                self.process(next, now: now, into: &actions)
            }
        case .buffered(let acknowledgement), .duplicate(let acknowledgement):
            self.acknowledge(acknowledgement, into: &actions)
        case .dropped:
            break
        }
    }

    /// A stream message in sequence order.
    mutating func process(_ message: SSMMessage, now: NIODeadline, into actions: inout [Action]) {
        switch message.payloadType {
        case .output:
            actions.append(.streamData(message.payload))
        case .handshakeRequest:
            guard case .client(var machine) = self.handshake else { return self.unexpected(message, into: &actions) }
            guard let request = try? HandshakeRequestPayload(payload: message.payload) else {
                return actions.append(.refused(.invalidPayload, "\(message.payloadType)"))
            }
            let action = machine.requestReceived(request)
            self.handshake = .client(machine)
            if case .sendHandshakeResponse(let response) = action {
                self.sendHandshake(.handshakeResponse, response.encoded(), now: now, into: &actions)
            }
        case .handshakeResponse:
            guard case .agent(var machine) = self.handshake else { return self.unexpected(message, into: &actions) }
            guard let response = try? HandshakeResponsePayload(payload: message.payload) else {
                return actions.append(.refused(.invalidPayload, "\(message.payloadType)"))
            }
            let action = machine.responseReceived(response, now: now)
            self.handshake = .agent(machine)
            self.agentHandshake(action, now: now, into: &actions)
        case .handshakeComplete:
            guard case .client(var machine) = self.handshake else { return self.unexpected(message, into: &actions) }
            guard let complete = try? HandshakeCompletePayload(payload: message.payload) else {
                return actions.append(.refused(.invalidPayload, "\(message.payloadType)"))
            }
            let action = machine.completeReceived(complete)
            self.handshake = .client(machine)
            switch action {
            case .established(let negotiated, let customerMessage):
                self.establish(negotiated, customerMessage: customerMessage, into: &actions)
            case .fail(let reason):
                self.end(reason: reason, byPeer: false, into: &actions)
            default:
                break
            }
        case .flag:
            guard let flag = try? FlagPayload(payload: message.payload) else {
                return actions.append(.refused(.invalidPayload, "\(message.payloadType)"))
            }
            if flag == .terminateSession {
                self.end(reason: "the client terminated the session", byPeer: true, into: &actions)
            } else if flag == .connectToPortError || flag == .disconnectToPort {
                actions.append(.streamFlag(flag))
            }
        case .size:
            guard self.isAgent, self.negotiated?.isTerminal == true else {
                return self.unexpected(message, into: &actions)
            }
            do {
                actions.append(.terminalSize(try TerminalSize(payload: message.payload)))
            } catch {
                actions.append(.refused(.invalidPayload, "\(error)"))
            }
        case .stdErr:
            guard !self.isAgent, self.negotiated?.isTerminal == true else {
                return self.unexpected(message, into: &actions)
            }
            actions.append(.standardError(message.payload))
        case .exitCode:
            guard !self.isAgent, self.negotiated?.extensions.contains(.exitCodes) == true else {
                return self.unexpected(message, into: &actions)
            }
            do {
                actions.append(.exitCode(try ExitCodePayload(payload: message.payload).code))
            } catch {
                actions.append(.refused(.invalidPayload, "\(error)"))
            }
        case .jumpgateConnectError:
            guard !self.isAgent, self.negotiated?.extensions.contains(.connectErrors) == true else {
                return self.unexpected(message, into: &actions)
            }
            guard let error = try? ConnectErrorPayload(payload: message.payload) else {
                return actions.append(.refused(.invalidPayload, "\(message.payloadType)"))
            }
            actions.append(.connectError(error))
        default:
            self.unexpected(message, into: &actions)
        }
    }

    /// A stream message whose payload type this end never takes (or not in this role).
    func unexpected(_ message: SSMMessage, into actions: inout [Action]) {
        actions.append(.refused(.unexpectedMessage, "\(message.payloadType)"))
    }

    mutating func agentHandshake(
        _ action: AgentHandshakeStateMachine.Action,
        now: NIODeadline,
        into actions: inout [Action]
    ) {
        switch action {
        case .sendHandshakeRequest(let request):
            self.sendHandshake(.handshakeRequest, request.encoded(), now: now, into: &actions)
        case .sendHandshakeComplete(let complete, let negotiated):
            self.sendHandshake(.handshakeComplete, complete.encoded(), now: now, into: &actions)
            self.establish(negotiated, customerMessage: "", into: &actions)
        case .fail(let reason):
            self.end(reason: reason, byPeer: false, into: &actions)
        case .none:
            break
        }
        actions.append(.flush)
    }

    /// The handshake's result: messages from now on use the negotiated settings (digests, acknowledgement
    /// mode); what was already sent (the handshake) is kept.
    mutating func establish(_ negotiated: NegotiatedSession, customerMessage: String, into actions: inout [Action]) {
        self.negotiated = negotiated
        self.writer.digestFree = negotiated.extensions.contains(.digestFree)
        var configuration = ReliableDeliveryConfiguration.negotiated(negotiated.extensions)
        if negotiated.mode == .basic {
            // A basic-mode client withholds acks until it has a local connection: keep resending.
            configuration.retransmitWhileConnected = true
        }
        self.reliability.reconfigure(configuration)
        actions.append(.established(negotiated, customerMessage: customerMessage))
    }

    mutating func acknowledgementReceived(_ message: SSMMessage, now: NIODeadline, into actions: inout [Action]) {
        let result: ReliableDeliveryStateMachine.AcknowledgementResult
        if message.payloadType == .jumpgateCumulativeAck, let ack = try? CumulativeAckPayload(payload: message.payload)
        {
            // -1: nothing yet. Below that is no sequence number (Int64.min once overflowed the arithmetic
            // below and stopped the process).
            guard (-1..<self.reliability.nextSequenceNumber).contains(ack.highestContiguousSequenceNumber) else {
                return actions.append(.refused(.unexpectedMessage, "an acknowledgement of messages never sent"))
            }
            result = self.reliability.cumulativeAcknowledgementReceived(
                upTo: ack.highestContiguousSequenceNumber,
                now: now
            )
        } else if let ack = try? AcknowledgeContent(payload: message.payload) {
            guard (0..<self.reliability.nextSequenceNumber).contains(ack.acknowledgedSequenceNumber) else {
                return actions.append(.refused(.unexpectedMessage, "an acknowledgement of a message never sent"))
            }
            result = self.reliability.acknowledgementReceived(sequenceNumber: ack.acknowledgedSequenceNumber, now: now)
        } else {
            return actions.append(.refused(.invalidPayload, "\(message.messageType)"))
        }
        if case .acknowledged(windowOpened: true) = result { actions.append(.sendWindowOpened) }
    }
}
