#if canImport(Glibc)
import Glibc
#endif

/// The outcome of a finished tool.
struct ToolResult {
    /// The exit status (128 + signal when killed by a signal, 127 when it could not start).
    var status: Int32
    /// Everything it wrote to stdout.
    var stdout: String
    /// Everything it wrote to stderr.
    var stderr: String
}

/// Runs a tool to completion with posix_spawn, feeding `stdin` and collecting both outputs in
/// one poll loop, so that no pipe can fill and block it whatever the sizes. (Foundation's
/// Process needs a run loop whose wake-up socket cannot be created in a network namespace
/// whose loopback is down, and then never reports the exit.)
func runTool(_ path: String, _ arguments: [String], stdin: String? = nil) -> ToolResult {
    var input: [Int32] = [-1, -1]
    var output: [Int32] = [-1, -1]
    var errors: [Int32] = [-1, -1]
    guard pipe(&input) == 0, pipe(&output) == 0, pipe(&errors) == 0 else {
        return ToolResult(status: 127, stdout: "", stderr: "cannot create pipes: \(String(cString: strerror(errno)))")
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, input[0], 0)
    posix_spawn_file_actions_adddup2(&actions, output[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
    for fd in input + output + errors { posix_spawn_file_actions_addclose(&actions, fd) }

    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for arg in argv { free(arg) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
    close(input[0])
    close(output[1])
    close(errors[1])
    guard spawned == 0 else {
        close(input[1])
        close(output[0])
        close(errors[0])
        return ToolResult(status: 127, stdout: "", stderr: "cannot run \(path): \(String(cString: strerror(spawned)))")
    }

    let bytes = Array((stdin ?? "").utf8)
    var written = 0
    var stdinOpen = true
    if bytes.isEmpty {
        close(input[1])
        stdinOpen = false
    } else {
        _ = fcntl(input[1], F_SETFL, fcntl(input[1], F_GETFL) | O_NONBLOCK)
    }
    var collected: [[UInt8]] = [[], []]
    var open = [true, true]
    var buffer = [UInt8](repeating: 0, count: 65536)
    while open[0] || open[1] || stdinOpen {
        var fds: [pollfd] = []
        if stdinOpen { fds.append(pollfd(fd: input[1], events: Int16(POLLOUT), revents: 0)) }
        if open[0] { fds.append(pollfd(fd: output[0], events: Int16(POLLIN), revents: 0)) }
        if open[1] { fds.append(pollfd(fd: errors[0], events: Int16(POLLIN), revents: 0)) }
        if poll(&fds, nfds_t(fds.count), -1) < 0 {
            if errno == EINTR { continue }
            break
        }
        for entry in fds where entry.revents != 0 {
            if entry.fd == input[1] {
                let n = bytes[written...].withUnsafeBufferPointer { write(input[1], $0.baseAddress, $0.count) }
                if n > 0 { written += n }
                if n < 0 && errno != EAGAIN && errno != EINTR { written = bytes.count }  // the tool closed its input
                if written >= bytes.count {
                    close(input[1])
                    stdinOpen = false
                }
            } else {
                let index = entry.fd == output[0] ? 0 : 1
                let n = buffer.withUnsafeMutableBufferPointer { read(entry.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    collected[index] += buffer[0..<n]
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    close(entry.fd)
                    open[index] = false
                }
            }
        }
    }
    if stdinOpen { close(input[1]) }
    for (index, fd) in [output[0], errors[0]].enumerated() where open[index] { close(fd) }

    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    // WIFEXITED / WEXITSTATUS / WTERMSIG, written out: the C macros are not imported.
    let exitStatus: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return ToolResult(
        status: exitStatus, stdout: String(decoding: collected[0], as: UTF8.self), stderr: String(decoding: collected[1], as: UTF8.self))
}
