import JumpgateClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes and flushes at once: tools read the plugin's lines from a pipe as they appear.
func emit(_ text: String) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
        if n <= 0 { break }
        offset += n
    }
}

switch PluginInvocation(arguments: Array(CommandLine.arguments.dropFirst())) {
case .banner:
    emit(PluginInvocation.bannerText)
case .version:
    emit(PluginInvocation.versionText)
case .unknownOperation(let operation):
    emit(PluginInvocation.unknownOperationText(operation))
case .startSession:
    // Sessions arrive with the P1 Client issue. Unlike the official plugin, never fail silently or exit 0.
    emit("Cannot perform start session: this build of the Jumpgate session-manager-plugin cannot start sessions yet\n")
    exit(1)
}
