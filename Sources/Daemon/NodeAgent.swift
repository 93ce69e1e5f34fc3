import ClusterStore
import Executor
import Foundation
import KubeClient
import KubeModel
import Logging
import Metrics
import Synchronization

/// What `picket daemon` is told.
public struct AgentOptions: Sendable {
    /// The node whose pods this agent enforces.
    public var node: String
    /// How the sync loop paces itself.
    public var sync = SyncOptions()
    /// How long start-up waits for every informer's first list.
    public var cacheSyncTimeout: Duration = .seconds(300)
    /// Informer pacing.
    public var informer = InformerOptions()

    /// Options for `node`.
    public init(node: String) {
        self.node = node
    }
}

/// Start-up did not complete.
public struct AgentError: Error, CustomStringConvertible {
    /// Why, naming what was missing.
    public var description: String
}

/// One node's enforcement: informers for Pods, Namespaces, NetworkPolicies and this Node feed a
/// store; once all have listed, the sync loop keeps the kernel equal to what the store
/// compiles to. `/healthz` tells whether that holds.
public final class NodeAgent: Sendable {
    /// The store the informers fill.
    public let store: ClusterStore
    /// The sync loop.
    public let loop: SyncLoop
    private let informers: [(kind: StoreKind, informer: Informer)]
    private let options: AgentOptions
    private let logger: Logger
    private let syncing: Flag
    private let stopped = Flag()

    /// An agent reading through `client` and applying through `executor`.
    public init(client: APIClient, executor: Executor, options: AgentOptions, logger: Logger) {
        let store = ClusterStore(nodeName: options.node)
        let loop = SyncLoop(store: store, executor: executor, options: options.sync, logger: logger)
        self.store = store
        self.loop = loop
        self.options = options
        self.logger = logger
        let syncing = Flag()
        self.syncing = syncing
        let kinds: [(StoreKind, APIResource)] = [
            (.namespaces, .namespaces), (.pods, .pods), (.networkPolicies, .networkPolicies), (.node, .node(options.node)),
        ]
        informers = kinds.map { kind, resource in
            let watchRestarts = Counter(label: "picket_watch_restarts_total", dimensions: [("resource", kind.rawValue)])
            let relists = Counter(label: "picket_relists_total", dimensions: [("resource", kind.rawValue)])
            let failures = Counter(label: "picket_api_errors_total", dimensions: [("resource", kind.rawValue)])
            let informer = Informer(client: client, resource: resource, options: options.informer) { event in
                switch event {
                case .watchRestarted(let reason):
                    watchRestarts.increment()
                    logger.debug("watch restarted", metadata: ["resource": "\(resource)", "reason": "\(reason)"])
                case .relisting(let reason):
                    relists.increment()
                    logger.info("listing again", metadata: ["resource": "\(resource)", "reason": "\(reason)"])
                case .failed(let error, let retryIn):
                    failures.increment()
                    logger.warning(
                        "API request failed, the rules stay in force", metadata: ["resource": "\(resource)", "error": "\(error)", "retry_in_seconds": "\(retryIn.seconds)"])
                case .synced(let version):
                    logger.debug("listed", metadata: ["resource": "\(resource)", "resourceVersion": "\(version)"])
                default:
                    break
                }
                if store.handle(event, of: kind), syncing.isSet { loop.poke() }
                if case .synced = event, syncing.isSet { loop.poke() }
            }
            return (kind, informer)
        }
    }

    /// Starts the informers.
    public func startInformers() {
        for (_, informer) in informers { informer.start() }
    }

    /// Waits until every informer has listed once, at most `cacheSyncTimeout`; throws naming
    /// what has not synced and why.
    public func waitForCaches() throws(AgentError) {
        let deadline = ContinuousClock.now + options.cacheSyncTimeout
        for (kind, informer) in informers {
            let left = ContinuousClock.now.duration(to: deadline)
            if !informer.waitForSync(timeout: max(left, .zero)) {
                if stopped.isSet { return }  // shut down while waiting
                let missing = informers.filter { !$0.informer.status.synced }.map { entry in
                    "\(entry.kind.rawValue)" + (entry.informer.status.lastError.map { " (\($0))" } ?? " (no answer yet)")
                }
                throw AgentError(description: "caches not synced after \(options.cacheSyncTimeout.seconds) s: \(missing.joined(separator: "; "))")
            }
            _ = kind
        }
        if store.counts[.node] == 0 {
            logger.warning("this node's Node object was not found; its pod CIDRs are unknown", metadata: ["node": "\(options.node)"])
        }
    }

    /// Starts the sync loop (after `waitForCaches`).
    public func startSyncing() {
        syncing.set(true)
        loop.start()
        loop.poke()
    }

    /// Stops informers and the loop; the kernel keeps the rules.
    public func stop() {
        stopped.set(true)
        syncing.set(false)
        for (kind, informer) in informers where !informer.stop() {
            logger.warning("an informer did not stop in time", metadata: ["resource": "\(kind.rawValue)"])
        }
        if !loop.stop() { logger.warning("the sync loop did not stop in time") }
        logger.debug("stopped informers and the sync loop")
    }

    /// `/healthz`: 200 while every informer has synced and is not failing, and the last sync
    /// succeeded within twice the verify period (at least 60 s); else 503 with the reasons.
    public func health() -> StatusResponse {
        var problems: [String] = []
        for (kind, informer) in informers {
            let status = informer.status
            if !status.synced { problems.append("\(kind.rawValue): not synced yet") }
            if let error = status.lastError { problems.append("\(kind.rawValue): \(error)") }
        }
        let sync = loop.health
        let freshness = max(options.sync.verifyPeriod * 2, .seconds(60))
        if let error = sync.lastError { problems.append("last sync: \(error)") }
        if let last = sync.lastSuccess {
            if ContinuousClock.now - last > freshness { problems.append("no successful sync for \(Int((ContinuousClock.now - last).seconds)) s") }
        } else if syncing.isSet {
            problems.append("no successful sync yet")
        } else {
            problems.append("waiting for caches")
        }
        if problems.isEmpty {
            let versions = StoreKind.allCases.map { "\($0.rawValue)=\(sync.enforcedResourceVersions[$0] ?? "-")" }.joined(separator: " ")
            return StatusResponse(status: 200, body: "ok: \(options.node) enforces the cluster as of resourceVersion \(versions)\n")
        }
        return StatusResponse(status: 503, body: problems.joined(separator: "\n") + "\n")
    }
}

/// A flag shared between threads.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .relaxed) }
    func set(_ on: Bool) { value.store(on, ordering: .relaxed) }
}
