import Foundation
import KubeClient
import KubeModel

/// Collects an informer's events, in order, for a test to wait on.
final class Recorder: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [InformerEvent] = []

    /// The handler to give the informer.
    var handler: @Sendable (InformerEvent) -> Void {
        { [self] event in lock.withLock { recorded.append(event) } }
    }

    /// Every event so far.
    var events: [InformerEvent] { lock.withLock { recorded } }

    /// Waits until `condition` holds for the events (checked every 10 ms), at most `timeout`;
    /// whether it held.
    func wait(timeout: Duration = .seconds(30), until condition: ([InformerEvent]) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(events) { return true }
            usleep(10_000)
        }
        return condition(events)
    }

    /// Forgets the events so far.
    func clear() { lock.withLock { recorded.removeAll() } }
}

extension InformerEvent {
    /// `added ns/name`, `updated ns/name`, `deleted ns/name`, `synced`, `relisting`,
    /// `restarted`, `failed`: what a test compares.
    var summary: String {
        switch self {
        case .added(let item): "added \(item.object.key)"
        case .updated(_, let item): "updated \(item.object.key)"
        case .deleted(let item): "deleted \(item.object.key)"
        case .synced: "synced"
        case .relisting: "relisting"
        case .watchRestarted: "restarted"
        case .failed: "failed"
        }
    }

    /// Whether it is an added, updated or deleted event.
    var isChange: Bool {
        switch self {
        case .added, .updated, .deleted: true
        default: false
        }
    }
}

extension Array where Element == InformerEvent {
    /// The summaries of the change events only.
    var changes: [String] { filter(\.isChange).map(\.summary) }

    /// How many events have this summary.
    func count(_ summary: String) -> Int { filter { $0.summary == summary }.count }
}

/// Whether python3 and openssl, which the test API server needs, are on PATH.
let hasTestServerTools: Bool = {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    func found(_ tool: String) -> Bool {
        path.split(separator: ":").contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
    }
    if !(found("python3") && found("openssl")) {
        print("*** KubeClientTests: python3 or openssl not on PATH: the API server tests are SKIPPED (run `make deps`) ***")
        return false
    }
    return true
}()
