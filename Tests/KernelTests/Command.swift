// Running the host's networking tools from the kernel tests: one-shot commands with a deadline
// and their output captured, and long-running servers ended by PID. Nothing here runs a shell:
// every argument vector goes to the tool as is.

import Executor
import Foundation
import ToolRunner

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
        // posix_spawn with close-on-exec pipes and one poll loop (the executor's runner):
        // Foundation's Process crashed in its launch path with many launches from several
        // threads, as the probes do.
        let result = runTool(path, Array(argv.dropFirst()), stdin: input, timeout: timeout)
        if result.timedOut {
            throw CommandError(command: argv, status: nil, message: "killed after \(timeout) s")
        }
        guard result.status == 0 else {
            throw CommandError(command: argv, status: result.status, message: result.stderr + result.stdout)
        }
        return CommandOutput(stdout: result.stdout, stderr: result.stderr)
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
            try process.run()
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
