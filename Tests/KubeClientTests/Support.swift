// Support for the kubeconfig and credential tests: scratch directories with files written by
// the test, and a clock the test moves.

import Foundation
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

    /// Writes `text` to `name` (creating directories on the way) and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String, executable: Bool = false) throws -> String {
        let target = file(name)
        let directory = (target as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: target))
        if executable { try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: target) }
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
