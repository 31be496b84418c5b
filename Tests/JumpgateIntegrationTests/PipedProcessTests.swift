import Foundation
import Testing

@testable import JumpgateAgent

/// A program whose output is read through pipes, as non-interactive commands run: a real `sh`.
@Suite("Piped processes", .serialized)
struct PipedProcessTests {
    @Test(
        "standard output and standard error arrive apart, standard input is empty, nothing of the agent's is inherited, and the exit code"
    )
    func pipes() throws {
        let program = try PipedProcess.spawn(
            .init(
                executable: "/bin/sh",
                arguments: [
                    "sh", "-c",
                    "echo out; echo err >&2; cat; echo fds: $(ls /proc/self/fd | tr '\\n' ' '); test -t 0 || echo no-tty; exit 4",
                ],
                environment: ["PATH": "/usr/bin:/bin"],
                workingDirectory: "/"
            )
        )
        // Read both to their end (the writers are the program's only), then reap it.
        let output = PseudoTerminalTests.read(program.standardOutput)
        let errors = PseudoTerminalTests.read(program.standardError)
        close(program.standardOutput)
        close(program.standardError)
        #expect(output == "out\nfds: 0 1 2 3\nno-tty\n", "\(output)")
        #expect(errors == "err\n")
        #expect(program.process.waitForExit() == .exited(4))
    }

    @Test("a program that cannot be started is an error that names it")
    func failure() throws {
        let error = #expect(throws: SpawnedProcess.Failure.self) {
            try PipedProcess.spawn(.init(executable: "/nonexistent/sh", arguments: ["sh"], environment: [:]))
        }
        #expect(
            error?.description
                == "cannot start the command: posix_spawn /nonexistent/sh failed: No such file or directory"
        )
    }
}
