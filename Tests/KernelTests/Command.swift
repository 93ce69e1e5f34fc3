// Running the host's networking tools from the kernel tests: one-shot commands with a deadline
// and their output captured, and long-running servers ended by PID. Nothing here runs a shell:
// every argument vector goes to the tool as is.

import Foundation

/// A command that failed, with what it printed, so a test report shows the tool's own words.
struct CommandError: Error, CustomStringConvertible {
    /// The argument vector, tool first.
    var command: [String]
    /// The exit status, or nil when the command was killed at its deadline or did not start.
    var status: Int32?
    /// Why it failed, as the tool said it (stderr) or as we saw it.
    var message: String
    /// The input the command was given, when it matters for the report (restore text).
    var input: String?

    var description: String {
        var text = "`\(command.joined(separator: " "))` "
        text += status.map { "exited with status \($0)" } ?? "did not finish"
        text += ": " + message.trimmingCharacters(in: .whitespacesAndNewlines)
        if let input {
            text += "\n--- input ---\n" + input
        }
        return text
    }
}

/// What a finished command printed.
struct CommandOutput {
    /// Standard output.
    var stdout: String
    /// Standard error.
    var stderr: String
}

/// Finds tools on PATH and runs them.
enum Command {
    /// Serialises `Process.run` (see `run`).
    static let launchLock = NSLock()

    /// The directories searched for tools: PATH, then the sbin directories root's PATH usually has.
    private static var searchPath: [String] {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin"]
    }

    /// The absolute path of an executable named `tool`, or nil when there is none.
    static func which(_ tool: String) -> String? {
        if tool.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: tool) ? tool : nil }
        for directory in searchPath {
            let candidate = (directory as NSString).appendingPathComponent(tool)
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `argv` to completion, feeding it `input`, and returns what it printed. Throws when it
    /// cannot start, exits non-zero or is still running after `timeout` seconds (it is then
    /// killed by its PID).
    @discardableResult
    static func run(_ argv: [String], input: String? = nil, timeout: Double = 30) throws(CommandError) -> CommandOutput {
        guard let tool = argv.first, let path = which(tool) else {
            throw CommandError(command: argv, status: nil, message: "\(argv.first ?? "") not found on PATH")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = Array(argv.dropFirst())
        let stdout = Pipe()
        let stderr = Pipe()
        let stdin = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = stdin
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        do {
            // Foundation's Process.run is not safe to call from several threads at once here
            // (a crash in its launch path was seen with probes started in parallel): launches
            // are serialised, the commands still run in parallel.
            try Command.launchLock.withLock { try process.run() }
        } catch {
            throw CommandError(command: argv, status: nil, message: "cannot start: \(error)")
        }
        // Both pipes are drained while the command runs so that a chatty tool never blocks, on
        // threads of their own: the dispatch pool has two threads here, and Foundation needs one
        // to notice that the command ended. Reads and writes are plain POSIX calls retried on
        // EINTR: Foundation's readDataToEndOfFile traps when a signal (SIGCHLD, with many
        // commands running at once) interrupts its read.
        let collected = Collected()
        let readers = DispatchGroup()
        for (pipe, isError) in [(stdout, false), (stderr, true)] {
            detach(readers) {
                collected.store(readToEnd(pipe.fileHandleForReading.fileDescriptor), isError: isError)
            }
        }
        detach(readers) {
            if let input { writeAll(Array(input.utf8), to: stdin.fileHandleForWriting.fileDescriptor) }
            // An error here means the tool exited without reading all of its input; its exit
            // status says why.
            do {
                try stdin.fileHandleForWriting.close()
            } catch {
                // Already closed by the failed write's peer: nothing left to release.
            }
        }
        if finished.wait(timeout: .now() + timeout) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            let died = finished.wait(timeout: .now() + 5) == .success
            throw CommandError(command: argv, status: nil, message: "killed after \(timeout) s" + (died ? "" : " (and still not gone 5 s later)"))
        }
        // The pipes close when the command ends, unless something it started still holds them.
        if readers.wait(timeout: .now() + 10) == .timedOut {
            throw CommandError(command: argv, status: process.terminationStatus, message: "its output stayed open 10 s after it exited")
        }
        let output = collected.output
        guard process.terminationStatus == 0 else {
            throw CommandError(command: argv, status: process.terminationStatus, message: output.stderr + output.stdout)
        }
        return output
    }

    /// The output of a command, thread-safely filled by the pipe readers.
    private final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var stdout = Data()
        private var stderr = Data()

        func store(_ data: Data, isError: Bool) {
            lock.withLock {
                if isError { stderr = data } else { stdout = data }
            }
        }

        var output: CommandOutput {
            lock.withLock {
                CommandOutput(stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
            }
        }
    }
}

/// Everything readable from `fd` until end of file, retrying reads a signal interrupted.
private func readToEnd(_ fd: Int32) -> Data {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            data.append(contentsOf: buffer[0..<n])
        } else if n == 0 || errno != EINTR {
            return data
        }
    }
}

/// Writes all of `bytes` to `fd`, retrying writes a signal interrupted; stops at the first other
/// error (the reader is gone).
private func writeAll(_ bytes: [UInt8], to fd: Int32) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n > 0 {
            offset += n
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            return
        }
    }
}

/// A long-running process this test started (a server in a pod), ended by its PID only.
final class BackgroundProcess: @unchecked Sendable {
    /// What it is, for messages.
    let label: String
    private let process: Process
    private let logPath: String

    /// Starts `argv` with stdout discarded and stderr kept in `logPath`.
    init(_ argv: [String], label: String, logPath: String) throws(CommandError) {
        guard let tool = argv.first, let path = Command.which(tool) else {
            throw CommandError(command: argv, status: nil, message: "\(argv.first ?? "") not found on PATH")
        }
        self.label = label
        self.logPath = logPath
        process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = Array(argv.dropFirst())
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw CommandError(command: argv, status: nil, message: "cannot create its log file \(logPath)")
        }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: logPath)
        do {
            // Foundation's Process.run is not safe to call from several threads at once here
            // (a crash in its launch path was seen with probes started in parallel): launches
            // are serialised, the commands still run in parallel.
            try Command.launchLock.withLock { try process.run() }
        } catch {
            throw CommandError(command: argv, status: nil, message: "cannot start: \(error)")
        }
    }

    /// Its PID.
    var pid: Int32 { process.processIdentifier }

    /// Whether it is still running.
    var isRunning: Bool { process.isRunning }

    /// What it wrote to stderr so far.
    var log: String {
        do {
            return try String(contentsOfFile: logPath, encoding: .utf8)
        } catch {
            return "(cannot read its log \(logPath): \(error))"
        }
    }

    /// Ends it: SIGTERM, then SIGKILL if it is still running after a second. Idempotent.
    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        for _ in 0..<100 where process.isRunning { usleep(10_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            for _ in 0..<100 where process.isRunning { usleep(10_000) }
        }
    }
}

/// Runs `body` on a new thread (not a dispatch-pool thread: blocking there starves Foundation's
/// process monitoring), entering `group` until it returns.
func detach(_ group: DispatchGroup, _ body: @escaping @Sendable () -> Void) {
    group.enter()
    let thread = Thread {
        body()
        group.leave()
    }
    thread.start()
}

/// Runs `body` for every element with at most `width` running at once, each on a thread of its
/// own. Results keep the order of `items`.
func boundedParallelMap<T: Sendable, R: Sendable>(_ items: [T], width: Int, _ body: @escaping @Sendable (T) -> R) -> [R] {
    let results = ParallelResults<R>(count: items.count)
    let slots = DispatchSemaphore(value: max(1, width))
    let group = DispatchGroup()
    for (i, item) in items.enumerated() {
        slots.wait()
        detach(group) {
            let value = body(item)
            results.lock.withLock { results.values[i] = value }
            slots.signal()
        }
    }
    group.wait()
    return results.values.map { $0! }
}

/// The slots `boundedParallelMap` fills, one per item, under a lock.
private final class ParallelResults<R>: @unchecked Sendable {
    let lock = NSLock()
    var values: [R?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
}
