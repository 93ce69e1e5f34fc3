// Support for the kubeconfig and credential tests: scratch directories with files written by
// the test, and a clock the test moves.

import Foundation
import Glibc
import Synchronization

/// A directory of its own under the system's temporary directory, removed by `remove()`.
struct ScratchDirectory {
    /// Its absolute path.
    let path: String

    /// Creates an empty directory with a unique name.
    init(_ function: String = #function) throws {
        let name = "picket-kubeclient-\(function.prefix { $0.isLetter || $0.isNumber })-\(UUID().uuidString)"
        path = FileManager.default.temporaryDirectory.appendingPathComponent(name).path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// The absolute path of `name` in the directory.
    func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Writes `text` to `name` (creating directories on the way) and returns its path. The file
    /// is opened close-on-exec: a tool spawned meanwhile by a test running in parallel must not
    /// inherit it, or running this file, if it is a plugin script, fails with "Text file busy".
    @discardableResult
    func write(_ name: String, _ text: String, executable: Bool = false) throws -> String {
        let target = file(name)
        let directory = (target as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let mode: mode_t = executable ? 0o755 : 0o644
        let fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw WriteFailure(path: target, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { throw WriteFailure(path: target, reason: String(cString: strerror(errno))) }
            written += count
        }
        guard fchmod(fd, mode) == 0 else { throw WriteFailure(path: target, reason: String(cString: strerror(errno))) }
        return target
    }

    /// The text of `name`, or nil when it does not exist.
    func read(_ name: String) throws -> String? {
        guard FileManager.default.fileExists(atPath: file(name)) else { return nil }
        return try String(contentsOfFile: file(name), encoding: .utf8)
    }

    /// Removes the directory and everything in it.
    func remove() {
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            print("could not remove \(path): \(error)")
        }
    }
}

/// A scratch file that could not be written.
struct WriteFailure: Error, CustomStringConvertible {
    var path: String
    var reason: String
    var description: String { "cannot write \(path): \(reason)" }
}

/// Runs `body` with a fresh scratch directory and removes it afterwards, whatever happens.
func withScratchDirectory<T>(_ function: String = #function, _ body: (ScratchDirectory) throws -> T) throws -> T {
    let directory = try ScratchDirectory(function)
    defer { directory.remove() }
    return try body(directory)
}

/// A clock the test sets; `now` is what `Credentials` is given.
final class TestClock: Sendable {
    private let time: Mutex<Date>

    /// A clock showing `start`.
    init(_ start: Date) { time = Mutex(start) }

    /// The time it shows.
    @Sendable func now() -> Date { time.withLock { $0 } }

    /// Moves the clock forward.
    func advance(by seconds: TimeInterval) { time.withLock { $0 += seconds } }
}
