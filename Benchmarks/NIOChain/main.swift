// NIOChain: Jumpgate's shape in SwiftNIO with nothing of Jumpgate in it, for scripts/bench-nio-chain.
//
//     NIOChain client LISTEN UPSTREAM              plain TCP in, TLS out (like `jumpgate forward`)
//     NIOChain relay  LISTEN UPSTREAM CERT KEY     TLS in, TLS out (like the gateway)
//     NIOChain relay  LISTEN UPSTREAM              plain TCP in and out (a relay-blind gateway: the client's
//                                                  TLS then ends at `end`: NIO_CHAIN_E2E=nio in the script)
//     NIOChain end    LISTEN TARGET   CERT KEY     TLS in, plain TCP out (like the agent)
//
// Each accepted connection gets its own outbound connection on the same event loop, and the two are glued
// byte for byte: no framing, no acknowledgements, no multiplexing, no audit. The sockets are set up the way
// Jumpgate's are (TCP_NODELAY, one read per wake-up, reads of at most 128 KiB on TLS connections and 64 KiB
// on plain ones, MultiThreadedEventLoopGroup.singleton), and TLS is NIOSSL with its defaults (TLS 1.3,
// AES-128-GCM on AES hardware). So the chain costs what NIO, NIOSSL and the kernel cost a byte and a
// message in three processes and two TLS hops with Jumpgate's settings; Jumpgate beside it in one tunnelbench
// run shows what its own protocol and session engine add (docs/PERFORMANCE.md). NIO_CHAIN_TUNED=1 takes the
// tuned settings of ../shared/reference/nio-data-path-measurements.md instead (see `tuned` below). Not a model
// for setups: each connection here makes two TLS handshakes, where Jumpgate opens a stream inside a session.
import NIOCore
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

/// Glues two channels: what one reads the other writes, flushed once per read burst. A channel reads only
/// while its partner is writable (the partner's writability change lets it read again); the end of one
/// side's input closes the partner's output (half-close), and a channel that closes closes its partner.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var readPending = false

    static func pair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler()
        let second = GlueHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    private var isWritable: Bool {
        self.context?.channel.isActive == true && self.context?.channel.isWritable == true
    }

    private func partnerRead(_ data: NIOAny) {
        self.context?.write(data, promise: nil)
    }

    private func partnerReadComplete() {
        self.context?.flush()
    }

    private func partnerClosed() {
        self.context?.close(promise: nil)
    }

    /// The partner's peer sent its last byte: pass the end of the stream on (TCP FIN, or TLS close_notify
    /// then FIN) once everything written before it is out. Not at once: when this side's input has closed
    /// too, closing the output closes the channel, and a close drops writes not yet on the socket. An empty
    /// write completes after every write queued before it.
    private func partnerInputClosed() {
        guard let context = self.context else { return }
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(ByteBuffer()), promise: promise)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        promise.futureResult.whenComplete { _ in bound.value.close(mode: .output, promise: nil) }
    }

    private func partnerBecameWritable() {
        if self.readPending {
            self.readPending = false
            self.context?.read()
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.partner?.partnerBecameWritable()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.partner?.partnerRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.partnerReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner?.partnerClosed()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(.inputClosed) = event as? ChannelEvent {
            self.partner?.partnerInputClosed()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if self.partner?.isWritable == true {
            context.read()
        } else {
            self.readPending = true
        }
    }
}

enum Role: String {
    case client, relay, end
}

struct Usage: Error, CustomStringConvertible {
    var description: String {
        "usage: NIOChain client LISTEN UPSTREAM | relay LISTEN UPSTREAM [CERT KEY] | end LISTEN TARGET CERT KEY"
    }
}

func address(_ text: String) throws -> SocketAddress {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
        throw Usage()
    }
    return try SocketAddress(ipAddress: String(text[..<colon]), port: port)
}

/// Jumpgate's settings by default. NIO_CHAIN_TUNED=1 takes those of the tuned chain in
/// ../shared/reference/nio-data-path-measurements.md instead: reads of up to 256 KiB on every socket, up to
/// 16 reads per wake-up, write watermarks of 256 KiB and 1 MiB, one event-loop thread (scripts/bench-nio-chain
/// adds its glibc malloc thresholds).
let tuned = getenv("NIO_CHAIN_TUNED").map { String(cString: $0) == "1" } ?? false
let tlsReads = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: (tuned ? 256 : 128) * 1024)
let plainReads = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: (tuned ? 256 : 64) * 1024)
let readsPerWakeUp: UInt = tuned ? 16 : 1
let watermarks =
    tuned
    ? ChannelOptions.Types.WriteBufferWaterMark(low: 256 * 1024, high: 1024 * 1024)
    : ChannelOptions.Types.WriteBufferWaterMark(low: 32 * 1024, high: 64 * 1024)

let arguments = Array(CommandLine.arguments.dropFirst())
guard let first = arguments.first, let role = Role(rawValue: first),
    arguments.count == (role == .client ? 3 : 5) || (role == .relay && arguments.count == 3)
else {
    let text = "\(Usage())\n"
    _ = write(2, text, text.utf8.count)
    exit(2)
}
let listen = try address(arguments[1])
let upstream = try address(arguments[2])
// A relay without a certificate is plain on both sides (relay-blind).
let terminatesTLS = arguments.count == 5
let serverContext: NIOSSLContext? =
    !terminatesTLS
    ? nil
    : try NIOSSLContext(
        configuration: .makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(arguments[3]).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: arguments[4], format: .pem))
        )
    )
var clientConfiguration = TLSConfiguration.makeClientConfiguration()
clientConfiguration.certificateVerification = .none
let clientContext: NIOSSLContext? =
    role == .end || (role == .relay && !terminatesTLS) ? nil : try NIOSSLContext(configuration: clientConfiguration)

let group: MultiThreadedEventLoopGroup = tuned ? MultiThreadedEventLoopGroup(numberOfThreads: 1) : .singleton
let server = try await ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 4096)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
    .childChannelOption(.allowRemoteHalfClosure, value: true)
    .childChannelOption(.recvAllocator, value: serverContext == nil ? plainReads : tlsReads)
    .childChannelOption(.maxMessagesPerRead, value: readsPerWakeUp)
    .childChannelOption(.writeBufferWaterMark, value: watermarks)
    .childChannelInitializer { inbound in
        inbound.eventLoop.makeCompletedFuture {
            let (inboundGlue, outboundGlue) = GlueHandler.pair()
            if let serverContext {
                try inbound.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
            }
            try inbound.pipeline.syncOperations.addHandler(inboundGlue)
            let outboundHandler = NIOLoopBound(outboundGlue, eventLoop: inbound.eventLoop)
            ClientBootstrap(group: inbound.eventLoop)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .channelOption(.recvAllocator, value: clientContext == nil ? plainReads : tlsReads)
                .channelOption(.maxMessagesPerRead, value: readsPerWakeUp)
                .channelOption(.writeBufferWaterMark, value: watermarks)
                .channelInitializer { outbound in
                    outbound.eventLoop.makeCompletedFuture {
                        if let clientContext {
                            try outbound.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: clientContext, serverHostname: nil)
                            )
                        }
                        try outbound.pipeline.syncOperations.addHandler(outboundHandler.value)
                    }
                }
                .connect(to: upstream)
                .whenComplete { result in
                    switch result {
                    case .success(let outbound):
                        // Closing with the inbound side, also when it closed while this one connected (its glue
                        // handler then had no partner to close). Not `isActive`: a loopback connect can complete
                        // before the inbound channel is registered.
                        inbound.closeFuture.whenComplete { _ in outbound.close(promise: nil) }
                    case .failure:
                        inbound.close(promise: nil)
                    }
                }
        }
    }
    .bind(to: listen)
    .get()
try await server.closeFuture.get()
