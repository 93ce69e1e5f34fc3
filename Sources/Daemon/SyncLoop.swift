// Daemon: what `picket daemon` runs: the sync loop, its health, and the status server.
//
// Design note: one thread owns the executor (kube-proxy's bounded-frequency runner, Felix's
// single-threaded dataplane driver). Informer events move the store's version and poke the loop;
// the loop runs when poked, but never sooner than `minInterval` after the previous sync began, so
// a burst of events coalesces into a few syncs, and also every `verifyPeriod` for a verify with
// drift repair: the executor reads the kernel back when its fingerprint (nf_tables generation,
// set headers) moved since the last write, or when the last full read is old, and otherwise
// trusts its memory. A sync compiles the store's snapshot (skipped while the store's version is
// unchanged) and applies it against the executor's memory: pod churn reaches the kernel as set
// members only. A failed sync is retried with backoff, reading the kernel back in full; the
// kernel keeps the previous rules meanwhile. Nothing is applied
// before every informer has listed once (`waitForCaches`).

import ClusterStore
import Executor
import Foundation
import IPSetKit
import KubeClient
import KubeModel
import Logging
import Metrics
import PolicyCompiler
import Synchronization

/// How the sync loop paces itself.
public struct SyncOptions: Sendable {
    /// The least time between the starts of two syncs (bursts coalesce within it).
    public var minInterval: Duration = .milliseconds(20)
    /// How often the kernel is read back and repaired (`--iptables-sync-period`).
    public var verifyPeriod: Duration = .seconds(300)
    /// The network namespace the rules go into (a path such as /run/netns/NAME; nil: this
    /// process's). The loop's thread joins it before its first sync; the API connections stay
    /// in this process's namespace.
    public var networkNamespace: String?
    /// Backoff after a failed sync.
    public var backoff = Backoff(initial: .milliseconds(500), cap: .seconds(30))
    /// Compile options (mark mask).
    public var compile = CompileOptions()
    /// Whether forwarded traffic to and from addresses of the node's pod CIDRs (its Node's
    /// spec.podCIDRs) that are no known pod is dropped.
    public var blockUnknownPodIPs = true

    /// Default options.
    public init() {}

    /// The executor's schedule: a verify every `verifyPeriod`, reading back in full at least
    /// every 5 minutes (or every `verifyPeriod` when it is longer).
    public var verifySchedule: VerifySchedule {
        VerifySchedule(verifyPeriod: verifyPeriod, fullReadPeriod: max(verifyPeriod, .seconds(300)))
    }
}

/// The last syncs, for /healthz and logs.
public struct SyncHealth: Sendable {
    /// When the last sync succeeded.
    public var lastSuccess: ContinuousClock.Instant?
    /// The wall-clock time of the last success (for the metric).
    public var lastSuccessDate: Date?
    /// The last failure, cleared by a success.
    public var lastError: String?
    /// Syncs run, and how many failed.
    public var syncs = 0
    public var failures = 0
    /// The store version the kernel enforces.
    public var enforcedVersion: UInt64 = 0
    /// The resourceVersion of the latest change of each kind the kernel enforces.
    public var enforcedResourceVersions: [StoreKind: String] = [:]
}

/// Compiles the store and applies it, on a thread of its own that owns the executor.
public final class SyncLoop: Sendable {
    private let store: ClusterStore
    private let options: SyncOptions
    private let logger: Logger
    private let condition = NSCondition()
    private let pokes = Mutex<(pending: Bool, stopped: Bool)>((false, false))
    private let healthState = Mutex<SyncHealth>(SyncHealth())
    private let finished = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)
    private let executorBox: UnsafeTransfer<Executor>
    private let metrics: SyncMetrics

    /// A loop applying through `executor` (which it owns from now on, on its thread).
    public init(store: ClusterStore, executor: Executor, options: SyncOptions, logger: Logger) {
        self.store = store
        self.options = options
        self.logger = logger
        executorBox = UnsafeTransfer(executor)
        metrics = SyncMetrics()
    }

    /// What the last syncs did.
    public var health: SyncHealth { healthState.withLock { $0 } }

    /// Asks for a sync soon (coalesced with other asks until it starts).
    public func poke() {
        pokes.withLock { $0.pending = true }
        condition.lock()
        condition.signal()
        condition.unlock()
    }

    /// Starts the loop's thread (once).
    public func start() {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            if let path = options.networkNamespace {
                do {
                    try onThread(inNetworkNamespaceAt: path) { run() }
                } catch {
                    logger.critical("cannot enter the network namespace; nothing is applied", metadata: ["netns": "\(path)", "error": "\(error)"])
                    healthState.withLock { $0.lastError = "cannot enter the network namespace \(path): \(error)" }
                }
            } else {
                run()
            }
            finished.signal()
        }
        thread.name = "sync loop"
        thread.start()
    }

    /// Stops the loop after the sync in progress, if any (at most `timeout`); the kernel keeps
    /// the rules.
    @discardableResult
    public func stop(timeout: Duration = .seconds(10)) -> Bool {
        pokes.withLock { $0.stopped = true }
        condition.lock()
        condition.broadcast()
        condition.unlock()
        guard started.load(ordering: .relaxed) else { return true }
        let ended = finished.wait(timeout: .now() + timeout.seconds) == .success
        if ended { finished.signal() }  // a second stop() returns at once too
        return ended
    }

    private var isStopped: Bool { pokes.withLock { $0.stopped } }

    /// Sleeps until poked, stopped or `deadline`; whether it was poked.
    private func waitForPoke(until deadline: ContinuousClock.Instant) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while true {
            let (pending, stopped) = pokes.withLock { s in
                let value = s
                s.pending = false
                return value
            }
            if stopped { return false }
            if pending { return true }
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero { return false }
            _ = condition.wait(until: Date(timeIntervalSinceNow: min(left.seconds, 1)))
        }
    }

    private func run() {
        let executor = executorBox.value
        var backoff = options.backoff
        var nextVerify = ContinuousClock.now  // the first apply reads the kernel back
        var retryAt: ContinuousClock.Instant?
        var lastStart = ContinuousClock.now - options.minInterval
        var wanted = true
        var last: Compiled?
        while !isStopped {
            // After a failure, only the backoff decides; else a poke runs minInterval after the
            // previous start, and without one the next verify is due.
            let due = retryAt ?? (wanted ? lastStart + options.minInterval : nextVerify)
            if ContinuousClock.now < due {
                if waitForPoke(until: due) { wanted = true }
                continue
            }
            wanted = false
            let retry = retryAt != nil
            retryAt = nil
            lastStart = ContinuousClock.now
            // A retry reads the kernel back in full (after a failure memory may not stand for
            // it); a periodic verify lets the executor decide from the kernel's fingerprint.
            let verification: Verification = retry ? .full : lastStart >= nextVerify ? .scheduled : .none
            if let report = sync(executor, verification: verification, last: &last) {
                backoff.reset()
                nextVerify = report.nextVerify ?? ContinuousClock.now + options.verifyPeriod
            } else {
                let delay = backoff.next()
                retryAt = ContinuousClock.now + delay
                logger.info("retrying the sync", metadata: ["in_seconds": "\(delay.seconds)"])
            }
        }
    }

    /// The ruleset compiled from one store version.
    private struct Compiled {
        var version: UInt64
        var ruleset: Ruleset
    }

    /// One sync: snapshot, compile, apply; the executor's report, or nil when it failed. While
    /// the store's version is that of `last`, the snapshot and compile are skipped: a verify of
    /// an idle node costs what the executor's check costs.
    private func sync(_ executor: Executor, verification: Verification, last: inout Compiled?) -> ApplyReport? {
        let start = ContinuousClock.now
        let snapshot: StoreSnapshot?
        let ruleset: Ruleset
        // With the store unchanged, the resourceVersions it has seen since (a relist, an event
        // that changed nothing compiled) are enforced by the same rules.
        let unchangedVersions: [StoreKind: String]?
        if let last, let versions = store.resourceVersions(ifVersion: last.version) {
            snapshot = nil
            ruleset = last.ruleset
            unchangedVersions = versions
        } else {
            unchangedVersions = nil
            let taken = store.snapshot()
            var compileOptions = options.compile
            if options.blockUnknownPodIPs, let node = taken.node { compileOptions.podCIDRs = node.podCIDRs }
            snapshot = taken
            ruleset = compile(taken.cluster, node: store.nodeName, options: compileOptions)
        }
        let compiled = ContinuousClock.now
        let verify = verification != .none
        do {
            // Enforced means in force for new connections: told as soon as the rules are
            // committed, before the conntrack walk that flags established flows.
            var enforced = start
            let report = try executor.apply(ruleset, verification: verification) {
                enforced = ContinuousClock.now
                if let snapshot {
                    for arrival in snapshot.arrivals { metrics.eventToEnforcement.recordNanoseconds((enforced - arrival).nanoseconds) }
                }
                healthState.withLock { h in
                    h.lastSuccess = enforced
                    h.lastSuccessDate = Date()
                    if let snapshot {
                        h.enforcedVersion = snapshot.version
                        h.enforcedResourceVersions = snapshot.resourceVersions
                    } else if let unchangedVersions {
                        h.enforcedResourceVersions = unchangedVersions
                    }
                }
            }
            let end = ContinuousClock.now
            metrics.record(duration: end - start, check: report.check, result: "success")
            if let snapshot { last = Compiled(version: snapshot.version, ruleset: ruleset) }
            if let duration = report.conntrackDuration { metrics.conntrackRecheck.recordNanoseconds(duration.nanoseconds) }
            metrics.rules.record(ruleset.ruleCount)
            metrics.setMembers.record(ruleset.memberCount)
            metrics.lastSuccess.record(Date().timeIntervalSince1970)
            healthState.withLock { h in
                h.syncs += 1
                h.lastError = report.conntrackFailure.map { "rules in force, conntrack marking failed: \($0)" }
            }
            if let failure = report.conntrackFailure {
                metrics.errors(cause: "conntrack").increment()
                logger.warning("rules committed, marking conntrack entries failed", metadata: ["error": "\(failure)"])
            }
            if !report.isEmpty || verify {
                logger.log(
                    level: report.isEmpty ? .debug : .info, report.isEmpty ? "verified, nothing drifted" : "applied",
                    metadata: [
                        "version": "\(snapshot?.version ?? last?.version ?? 0)", "check": "\(report.check.label)",
                        "changes": "\(report.isEmpty ? "none" : report.description.replacingOccurrences(of: "\n", with: "; "))",
                        "compile_ms": "\((compiled - start).milliseconds)", "enforced_ms": "\((enforced - start).milliseconds)",
                        "total_ms": "\((end - start).milliseconds)",
                    ])
            }
            return report
        } catch {
            metrics.record(duration: ContinuousClock.now - start, check: verification == .full ? .readBack : .none, result: "error")
            metrics.errors(cause: error.step.split(separator: " ").first.map(String.init) ?? "apply").increment()
            healthState.withLock { h in
                h.syncs += 1
                h.failures += 1
                h.lastError = "\(error)"
            }
            logger.error("sync failed, the previous rules stay in force", metadata: ["error": "\(error)", "verification": "\(verification)"])
            return nil
        }
    }
}

/// The sync loop's metrics (swift-metrics API; the backend is chosen by the program).
struct SyncMetrics: Sendable {
    let eventToEnforcement = Metrics.Timer(label: "picket_event_to_enforcement_seconds")
    let conntrackRecheck = Metrics.Timer(label: "picket_conntrack_recheck_seconds")
    let rules = Gauge(label: "picket_programmed_rules")
    let setMembers = Gauge(label: "picket_programmed_set_members")
    let lastSuccess = Gauge(label: "picket_last_successful_sync_timestamp_seconds")

    /// A sync's duration, by how the kernel was checked (`none`: planned against memory), and
    /// its result.
    func record(duration: Duration, check: ApplyReport.Check, result: String) {
        Metrics.Timer(label: "picket_sync_duration_seconds", dimensions: [("check", check.label)]).recordNanoseconds(duration.nanoseconds)
        Counter(label: "picket_syncs_total", dimensions: [("result", result)]).increment()
    }

    func errors(cause: String) -> Counter {
        Counter(label: "picket_sync_errors_total", dimensions: [("cause", cause)])
    }
}

extension ApplyReport.Check {
    /// The metric label and log value: none, fingerprint, read_back.
    var label: String {
        switch self {
        case .none: "none"
        case .fingerprint: "fingerprint"
        case .readBack: "read_back"
        }
    }
}

/// A value handed to another thread that will be its only user from then on.
struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension Duration {
    /// Whole nanoseconds.
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Milliseconds with two decimals, for logs.
    var milliseconds: String { String(format: "%.2f", Double(nanoseconds) / 1e6) }

    /// Seconds as a Double.
    var seconds: Double { Double(nanoseconds) / 1e9 }
}
