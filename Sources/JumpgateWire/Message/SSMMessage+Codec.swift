import NIOCore

extension SSMMessage {
    /// Decodes one message that fills `buffer` exactly, as one WebSocket frame carries one message.
    ///
    /// Throws if the header does not decode: the frame is shorter than a header, HeaderLength is not 116,
    /// MessageType is empty or not ASCII, or PayloadLength disagrees with the bytes that follow.
    /// Semantic checks (CreatedDate, digest) are in ``validate(_:)``, as the official peers separate them.
    public init(decoding buffer: ByteBuffer) throws(WireError) {
        var buffer = buffer
        try self.init(consuming: &buffer, payloadLengthFraming: false)
    }

    /// Decodes one message from the front of `buffer`, moving its reader index.
    ///
    /// With `payloadLengthFraming` the message ends after PayloadLength bytes, so a byte stream of
    /// concatenated messages (a capture) can be split; otherwise the payload is the rest of the buffer and
    /// must be exactly PayloadLength bytes.
    public init(consuming buffer: inout ByteBuffer, payloadLengthFraming: Bool) throws(WireError) {
        guard buffer.readableBytes >= Self.headerSize else {
            throw WireError(
                .truncatedMessage,
                "message is \(buffer.readableBytes) bytes, shorter than the \(Self.headerSize)-byte header"
            )
        }
        let start = buffer.readerIndex
        let headerLength = buffer.getInteger(at: start, as: UInt32.self)!
        guard headerLength == Self.headerLength else {
            throw WireError(.invalidHeaderLength, "HeaderLength is \(headerLength), expected \(Self.headerLength)")
        }
        let messageType = try Self.decodeMessageType(buffer, at: start + 4)
        let (schemaVersion, createdDate, sequenceNumber, flags) = buffer.getMultipleIntegers(
            at: start + 36,
            as: (UInt32, UInt64, Int64, UInt64).self
        )!
        let (idLow, idHigh) = buffer.getMultipleIntegers(at: start + 64, as: (UInt64, UInt64).self)!
        let (d0, d1, d2, d3) = buffer.getMultipleIntegers(at: start + 80, as: (UInt64, UInt64, UInt64, UInt64).self)!
        let (payloadType, payloadLength) = buffer.getMultipleIntegers(at: start + 112, as: (UInt32, UInt32).self)!
        let available = buffer.readableBytes - Self.headerSize
        let payloadSize: Int
        if payloadLengthFraming {
            guard Int(payloadLength) <= available else {
                throw WireError(
                    .truncatedMessage,
                    "PayloadLength is \(payloadLength) but only \(available) payload bytes follow"
                )
            }
            payloadSize = Int(payloadLength)
        } else {
            guard Int(payloadLength) == available else {
                throw WireError(
                    .inconsistentPayloadLength,
                    "PayloadLength is \(payloadLength) but \(available) payload bytes follow the header"
                )
            }
            payloadSize = available
        }
        buffer.moveReaderIndex(forwardBy: Self.headerSize)
        let payload = buffer.readSlice(length: payloadSize)!
        self.messageType = messageType
        self.schemaVersion = schemaVersion
        self.createdDate = createdDate
        self.sequenceNumber = sequenceNumber
        self.flags = flags
        self.messageID = MessageID(high: idHigh, low: idLow)
        self.payloadDigest = PayloadDigest(w0: d0, w1: d1, w2: d2, w3: d3)
        self.payloadType = PayloadType(rawValue: payloadType)
        self.payload = payload
    }

    /// Reads the space-padded type name; known names reuse a shared string, so decoding allocates nothing.
    static func decodeMessageType(_ buffer: ByteBuffer, at offset: Int) throws(WireError) -> MessageType {
        let found: MessageType?? = buffer.withUnsafeReadableBytes { raw -> MessageType?? in
            let base = offset - buffer.readerIndex
            let field = UnsafeRawBufferPointer(rebasing: raw[base..<(base + 32)])
            // Strip NULs, then whitespace, at both ends, as the Go peers do.
            var lower = 0
            var upper = 32
            while lower < upper, field[lower] == 0 || field[lower] == 0x20 || (0x09...0x0D).contains(field[lower]) {
                lower += 1
            }
            while upper > lower,
                field[upper - 1] == 0 || field[upper - 1] == 0x20 || (0x09...0x0D).contains(field[upper - 1])
            {
                upper -= 1
            }
            let name = UnsafeRawBufferPointer(rebasing: field[lower..<upper])
            guard !name.isEmpty else { return .some(nil) }
            for known in MessageType.known where known.rawValue.utf8.count == name.count {
                if known.rawValue.utf8.elementsEqual(name) { return .some(known) }
            }
            guard name.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return .some(nil) }
            return nil
        }
        switch found {
        case .some(.some(let type)):
            return type
        case .some(.none):
            throw WireError(.invalidMessageType, "MessageType is empty or not printable ASCII")
        case .none:
            let text = buffer.getString(at: offset, length: 32)!
            var trimmed = Substring(text)
            while let first = trimmed.first, first == " " || first == "\0" || first.isWhitespace {
                trimmed.removeFirst()
            }
            while let last = trimmed.last, last == " " || last == "\0" || last.isWhitespace { trimmed.removeLast() }
            guard let type = MessageType(String(trimmed)) else {
                throw WireError(.invalidMessageType, "MessageType '\(trimmed)' is not valid")
            }
            return type
        }
    }
}

extension SSMMessage {
    /// The message's bytes, as one WebSocket binary frame carries them.
    public func encoded() -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(self.encodedSize)
        buffer.writeSSMMessage(self)
        return buffer
    }
}

extension ByteBuffer {
    /// Writes `message`: the 120-byte header, then the payload bytes.
    @discardableResult
    public mutating func writeSSMMessage(_ message: SSMMessage) -> Int {
        var written = self.writeSSMMessageHeader(
            messageType: message.messageType,
            schemaVersion: message.schemaVersion,
            createdDate: message.createdDate,
            sequenceNumber: message.sequenceNumber,
            flags: message.flags,
            messageID: message.messageID,
            payloadDigest: message.payloadDigest,
            payloadType: message.payloadType,
            payloadLength: message.payloadLength
        )
        written += self.writeImmutableBuffer(message.payload)
        return written
    }

    /// Writes a whole message whose payload `writePayload` writes in place right after the header, so the
    /// data is copied once (from the socket's buffer into the frame); the digest is filled in afterwards:
    /// SHA-256 of exactly what was written, or all zeros on the negotiated digest-free path.
    @discardableResult
    public mutating func writeSSMMessage(
        messageType: MessageType,
        createdDate: UInt64,
        sequenceNumber: Int64,
        flags: UInt64,
        messageID: MessageID,
        payloadType: PayloadType,
        payloadLength: Int,
        digestFree: Bool,
        writePayload: (inout ByteBuffer) -> Void
    ) -> Int {
        let start = self.writerIndex
        self.writeSSMMessageHeader(
            messageType: messageType,
            createdDate: createdDate,
            sequenceNumber: sequenceNumber,
            flags: flags,
            messageID: messageID,
            payloadDigest: .zero,
            payloadType: payloadType,
            payloadLength: UInt32(payloadLength)
        )
        let payloadStart = self.writerIndex
        writePayload(&self)
        precondition(
            self.writerIndex - payloadStart == payloadLength,
            "writePayload wrote a different length than declared"
        )
        if !digestFree {
            let digest = PayloadDigest.sha256(of: self.getSlice(at: payloadStart, length: payloadLength)!)
            self.setMultipleIntegers(digest.w0, digest.w1, digest.w2, digest.w3, at: start + 80)
        }
        return self.writerIndex - start
    }

    /// Writes only the 120-byte header, so a caller can put the payload bytes after it without building
    /// an ``SSMMessage`` first (the data path reads socket bytes straight behind the header).
    @discardableResult
    public mutating func writeSSMMessageHeader(
        messageType: MessageType,
        schemaVersion: UInt32 = 1,
        createdDate: UInt64,
        sequenceNumber: Int64,
        flags: UInt64,
        messageID: MessageID,
        payloadDigest: PayloadDigest,
        payloadType: PayloadType,
        payloadLength: UInt32
    ) -> Int {
        self.reserveCapacity(minimumWritableBytes: SSMMessage.headerSize + Int(payloadLength))
        var written = self.writeInteger(SSMMessage.headerLength)
        let name = messageType.rawValue.utf8
        written += self.writeBytes(name)
        written += self.writeRepeatingByte(0x20, count: 32 - name.count)
        written += self.writeMultipleIntegers(
            schemaVersion,
            createdDate,
            sequenceNumber,
            flags,
            messageID.low,
            messageID.high,
            payloadDigest.w0,
            payloadDigest.w1,
            payloadDigest.w2,
            payloadDigest.w3,
            payloadType.rawValue,
            payloadLength
        )
        return written
    }
}
