// ToolRunner: runs a program to completion with posix_spawn, with a deadline. Shared by the
// executor (iptables-restore, ip6tables-restore) and the API client (exec credential plugins),
// so that every tool Picket starts is started one way.

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Held from creating a tool's pipes until it is spawned: until `FD_CLOEXEC` is set on them, a
/// tool spawned from another thread would inherit their ends (Glibc does not offer pipe2).
private let spawnLock = Mutex<Void>(())

/// The outcome of a finished tool.
public struct ToolResult: Sendable {
    /// The exit status (128 + signal when killed by a signal, 127 when it could not start).
    public var status: Int32
    /// Everything it wrote to stdout.
    public var stdout: String
    /// Everything it wrote to stderr.
    public var stderr: String
    /// Whether it was killed for running past its deadline.
    public var timedOut = false
}

/// Runs a tool to completion with posix_spawn, feeding `stdin` and collecting both outputs in
/// one poll loop, so that no pipe can fill and block it whatever the sizes. (Foundation's
/// Process needs a run loop whose wake-up socket cannot be created in a network namespace
/// whose loopback is down, and then never reports the exit, and crashed in its launch path
/// with many launches from several threads.) With a `timeout` (seconds), a tool still running
/// then is killed (SIGKILL, by its PID) and reported as timed out; its pipes are drained for at
/// most 5 s more. With `environment`, the tool gets exactly those variables instead of this
/// process's. A `path` without a slash is looked up in `PATH` (this process's), as a shell would.
public func runTool(
    _ path: String, _ arguments: [String], stdin: String? = nil, timeout: Double? = nil, environment: [String: String]? = nil
) -> ToolResult {
    var input: [Int32] = [-1, -1]
    var output: [Int32] = [-1, -1]
    var errors: [Int32] = [-1, -1]
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var pid: pid_t = 0

    // Close-on-exec pipes: a tool spawned meanwhile from another thread must not inherit these
    // ends (it would hold this tool's stdin open while this tool holds its own, and each would
    // wait for the other's EOF forever). dup2 clears the flag on the child's 0, 1 and 2.
    let spawned: Int32 = spawnLock.withLock { _ in
        guard pipe(&input) == 0, pipe(&output) == 0, pipe(&errors) == 0 else { return -errno }
        for fd in input + output + errors where fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 { return -errno }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        return spawn(&pid, path, arguments, environment: environment, actions: &actions)
    }
    guard spawned >= 0 else {
        for fd in input + output + errors where fd >= 0 { close(fd) }
        return ToolResult(status: 127, stdout: "", stderr: "cannot create pipes: \(String(cString: strerror(-spawned)))")
    }
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
    let clock = ContinuousClock()
    var deadline = timeout.map { clock.now + .milliseconds(Int64($0 * 1000)) }
    var timedOut = false
    while open[0] || open[1] || stdinOpen {
        var fds: [pollfd] = []
        if stdinOpen { fds.append(pollfd(fd: input[1], events: Int16(POLLOUT), revents: 0)) }
        if open[0] { fds.append(pollfd(fd: output[0], events: Int16(POLLIN), revents: 0)) }
        if open[1] { fds.append(pollfd(fd: errors[0], events: Int16(POLLIN), revents: 0)) }
        var wait: Int32 = -1
        if let due = deadline {
            let left = clock.now.duration(to: due)
            if left <= .zero {
                if timedOut { break }  // killed, and its pipes still open 5 s later: give up on them
                kill(pid, SIGKILL)
                timedOut = true
                deadline = clock.now + .seconds(5)
                continue
            }
            let (seconds, attoseconds) = left.components
            wait = Int32(min(seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1, 60_000))
        }
        if poll(&fds, nfds_t(fds.count), wait) < 0 {
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
    let exitStatus = decodeWaitStatus(status)
    return ToolResult(
        status: exitStatus, stdout: String(decoding: collected[0], as: UTF8.self), stderr: String(decoding: collected[1], as: UTF8.self),
        timedOut: timedOut)
}

/// A long-running program this process started (a test server, a daemon under test), its
/// output appended to a log file, ended by its PID only.
public final class BackgroundTool: @unchecked Sendable {
    /// Its PID.
    public let pid: pid_t
    /// Where its stdout and stderr go.
    public let logPath: String
    // Guarded by `lock`: whether it has been waited for, and how it ended.
    private let lock = Mutex<Int32?>(nil)

    /// Starts `path` with `arguments`, stdin from /dev/null, stdout and stderr appended to
    /// `logPath`; `environment` as for `runTool`. Throws the reason when it cannot start.
    public init(_ path: String, _ arguments: [String], logPath: String, environment: [String: String]? = nil) throws(BackgroundToolError) {
        self.logPath = logPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var child: pid_t = 0
        let spawned = spawnLock.withLock { _ in spawn(&child, path, arguments, environment: environment, actions: &actions) }
        guard spawned == 0 else { throw BackgroundToolError(description: "cannot run \(path): \(String(cString: strerror(spawned)))") }
        pid = child
    }

    /// The exit status once it has ended (128 + signal when killed), nil while it runs.
    public var exitStatus: Int32? {
        lock.withLock { ended in
            if let ended { return ended }
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
            ended = decodeWaitStatus(status)
            return ended
        }
    }

    /// Sends `signal` to it, if it still runs.
    public func signal(_ signal: Int32) {
        if exitStatus == nil { kill(pid, signal) }
    }

    /// Waits up to `timeout` for it to end; its exit status, or nil if it still runs.
    @discardableResult
    public func wait(timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = exitStatus { return status }
            usleep(5_000)
        }
        return exitStatus
    }

    /// Ends it: SIGTERM, then SIGKILL if it still runs after `grace`. Idempotent.
    public func stop(grace: Duration = .seconds(2)) {
        guard exitStatus == nil else { return }
        kill(pid, SIGTERM)
        if wait(timeout: grace) == nil {
            kill(pid, SIGKILL)
            wait(timeout: .seconds(5))
        }
    }

    deinit { stop() }
}

/// posix_spawn (posix_spawnp, searching this process's PATH, for a path without a slash) of `path`
/// with `arguments` and `actions`; the tool starts with no signal blocked and SIGPIPE at its
/// default, whatever the calling thread's mask (threads of the Swift runtime block most signals,
/// SIGTERM included), with `environment` or this process's. Returns posix_spawn's result.
private func spawn(
    _ pid: inout pid_t, _ path: String, _ arguments: [String], environment: [String: String]?, actions: inout posix_spawn_file_actions_t
) -> Int32 {
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    posix_spawnattr_setsigmask(&attributes, &noSignals)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    sigaddset(&defaults, SIGPIPE)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for arg in argv { free(arg) } }
    let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil] }
    defer { for entry in envp ?? [] { free(entry) } }
    return envp.withUnsafeBufferPointerOrEnviron { env in
        path.contains("/") ? posix_spawn(&pid, path, &actions, &attributes, argv, env) : posix_spawnp(&pid, path, &actions, &attributes, argv, env)
    }
}

/// A background tool that could not start.
public struct BackgroundToolError: Error, CustomStringConvertible {
    /// Why.
    public var description: String
}

/// WIFEXITED / WEXITSTATUS / WTERMSIG, written out: the C macros are not imported.
func decodeWaitStatus(_ status: Int32) -> Int32 {
    (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
}

extension Optional where Wrapped == [UnsafeMutablePointer<CChar>?] {
    /// `body` with these entries as an environment block, or with this process's when nil.
    fileprivate func withUnsafeBufferPointerOrEnviron(_ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>?) -> Int32) -> Int32 {
        guard let entries = self else { return body(environ) }
        return entries.withUnsafeBufferPointer { body($0.baseAddress) }
    }
}
