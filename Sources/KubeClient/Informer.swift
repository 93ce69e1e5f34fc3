import Foundation
import KubeModel
import Synchronization

/// The store key of an object: its namespace ("" for cluster-scoped kinds) and name.
extension APIObject {
    /// `namespace/name`, or `/name` for Namespaces and Nodes.
    public var key: ObjectKey {
        switch self {
        case .namespace(let namespace): ObjectKey(namespace: "", name: namespace.name)
        case .pod(let pod): pod.key
        case .networkPolicy(let policy): policy.key
        case .node(let node): ObjectKey(namespace: "", name: node.name)
        }
    }
}

/// What an informer tells its handler, in order, on its own thread.
public enum InformerEvent: Sendable {
    /// An object appeared (in the first list, a relist, or the watch).
    case added(APIItem)
    /// An object changed (a new resourceVersion).
    case updated(old: APIItem, new: APIItem)
    /// An object went away: its final state, with the deletion's resourceVersion (from a
    /// relist, the last state the store held).
    case deleted(APIItem)
    /// The store holds the whole collection as of a list; sent after the first list's changes
    /// and after each relist's.
    case synced(resourceVersion: String)
    /// The watch was started again: after the server ended it, or after it broke.
    case watchRestarted(reason: String)
    /// The collection is being listed again, for this reason (history compacted: 410).
    case relisting(reason: String)
    /// A request failed; the informer tries again after `retryIn`.
    case failed(APIError, retryIn: Duration)
}

/// How an informer lists and watches.
public struct InformerOptions: Sendable {
    /// Items per list page (`limit`).
    public var pageSize = 500
    /// The watch's server-side `timeoutSeconds`, drawn at random from this range each time so
    /// that many clients do not reconnect together (client-go draws from 5-10 minutes).
    public var watchTimeout: ClosedRange<Int> = 300...600
    /// A watch that receives nothing, not even a bookmark, for this long is taken for hung and
    /// started again. The API server sends a bookmark about every minute.
    public var idleTimeout: Duration = .seconds(150)
    /// Backoff after failures.
    public var backoff = Backoff()

    /// Default options.
    public init() {}
}

/// Keeps one collection of the API in memory: lists it page by page, then watches from the
/// list's resourceVersion with bookmarks; resumes a dropped or ended watch from the last
/// resourceVersion seen; lists again when the server's history no longer reaches it (410, as an
/// ERROR event or as an HTTP status) and reconciles the store, telling only real differences;
/// restarts a watch that is silent for longer than `idleTimeout`. The store holds the projected
/// model (`APIItem`) only. Runs on a thread of its own, started by `start()`, ended by `stop()`;
/// the handler is called on that thread, one event at a time, in order.
public final class Informer: Sendable {
    /// The collection.
    public let resource: APIResource
    private let client: APIClient
    private let options: InformerOptions
    private let handler: @Sendable (InformerEvent) -> Void
    private let cancellation = Cancellation()
    private let store = Mutex<[ObjectKey: APIItem]>([:])
    private let state = Mutex<Status>(Status())
    private let finished = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)

    /// What the informer has done so far, for health and logs.
    public struct Status: Sendable {
        /// Whether a list has completed (the store is usable).
        public var synced = false
        /// The last resourceVersion seen (list, event or bookmark).
        public var resourceVersion = ""
        /// The last failure, until the next success.
        public var lastError: APIError?
        /// Lists done, the first included.
        public var lists = 0
        /// Watches started.
        public var watches = 0
    }

    /// Creates an informer; nothing happens until `start()`.
    public init(
        client: APIClient, resource: APIResource, options: InformerOptions = InformerOptions(),
        handler: @escaping @Sendable (InformerEvent) -> Void
    ) {
        self.client = client
        self.resource = resource
        self.options = options
        self.handler = handler
    }

    /// What the informer has done so far.
    public var status: Status { state.withLock { $0 } }

    /// The objects held now, by key.
    public var items: [ObjectKey: APIItem] { store.withLock { $0 } }

    /// Starts listing and watching on a thread of its own (once).
    public func start() {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "informer \(resource)"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Stops the informer and waits (at most `timeout`) for its thread to end; any transfer in
    /// progress is cancelled at once.
    @discardableResult
    public func stop(timeout: Duration = .seconds(5)) -> Bool {
        cancellation.cancel()
        guard started.load(ordering: .relaxed) else { return true }
        let ended = finished.wait(timeout: .now() + timeout.seconds) == .success
        if ended { finished.signal() }  // a second stop() returns at once too
        return ended
    }

    /// Waits until the first list has completed, at most `timeout`; whether it has.
    public func waitForSync(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !status.synced {
            if ContinuousClock.now >= deadline || cancellation.isCancelled { return status.synced }
            _ = cancellation.sleep(for: .milliseconds(10))
        }
        return true
    }

    // MARK: the loop

    private func run() {
        var backoff = options.backoff
        var random = SystemRandomNumberGenerator()
        var needList = true
        var resourceVersion = ""
        while !cancellation.isCancelled {
            if needList {
                do {
                    resourceVersion = try relist()
                    needList = false
                    backoff.reset()
                } catch {
                    if error.isCancelled { return }
                    guard wait(after: error, backoff: &backoff, random: &random) else { return }
                    continue
                }
            }
            state.withLock { $0.watches += 1 }
            var delivered = false
            var relistReason: String?
            do {
                let timeout = Int.random(in: options.watchTimeout, using: &random)
                let end = try client.watch(
                    resource, from: resourceVersion, timeoutSeconds: timeout, idleTimeout: options.idleTimeout, cancellation: cancellation
                ) { event in
                    switch event {
                    case .added(let item), .modified(let item):
                        apply(item, deleted: false)
                        resourceVersion = item.resourceVersion
                    case .deleted(let item):
                        apply(item, deleted: true)
                        resourceVersion = item.resourceVersion
                    case .bookmark(let version):
                        resourceVersion = version
                    case .error(let status):
                        if status.code == 410 {
                            relistReason = "watch: \(status.message)"
                        } else {
                            let error = APIError(
                                server: client.server, request: "watch \(resource)", kind: .http(status.code), status: status,
                                message: "the watch ended with an error: \(status.code) \(status.reason): \(status.message)")
                            state.withLock { $0.lastError = error }
                        }
                        return false
                    }
                    delivered = true
                    state.withLock {
                        $0.resourceVersion = resourceVersion
                        $0.lastError = nil
                    }
                    return true
                }
                if let relistReason {
                    needList = true
                    handler(.relisting(reason: relistReason))
                } else if end == .stoppedByHandler, let error = status.lastError {
                    guard wait(after: error, backoff: &backoff, random: &random) else { return }
                } else {
                    backoff.reset()
                    handler(.watchRestarted(reason: "the server ended the watch"))
                }
            } catch {
                if error.isCancelled { return }
                if error.code == 410 {
                    needList = true
                    handler(.relisting(reason: "watch: \(error.message)"))
                    continue
                }
                if delivered { backoff.reset() }
                guard wait(after: error, backoff: &backoff, random: &random) else { return }
                handler(.watchRestarted(reason: error.message))
            }
        }
    }

    /// Reports a failure and sleeps the backoff's next step; false when stopped meanwhile.
    private func wait(after error: APIError, backoff: inout Backoff, random: inout SystemRandomNumberGenerator) -> Bool {
        let delay = backoff.next(retryAfter: error.retryAfter, using: &random)
        state.withLock { $0.lastError = error }
        handler(.failed(error, retryIn: delay))
        return cancellation.sleep(for: delay)
    }

    /// Lists the collection and makes the store equal to it, telling each difference (objects
    /// whose resourceVersion did not change are not told); returns the list's resourceVersion.
    private func relist() throws(APIError) -> String {
        let page = try client.list(resource, pageSize: options.pageSize, cancellation: cancellation)
        var listed: [ObjectKey: APIItem] = [:]
        listed.reserveCapacity(page.items.count)
        for item in page.items { listed[item.object.key] = item }
        let old = store.withLock { store in
            let old = store
            store = listed
            return old
        }
        for item in page.items {
            if let before = old[item.object.key] {
                if before.resourceVersion != item.resourceVersion { handler(.updated(old: before, new: item)) }
            } else {
                handler(.added(item))
            }
        }
        for (key, item) in old.sorted(by: { $0.key < $1.key }) where listed[key] == nil {
            handler(.deleted(item))
        }
        state.withLock {
            $0.synced = true
            $0.lists += 1
            $0.resourceVersion = page.resourceVersion
            $0.lastError = nil
        }
        handler(.synced(resourceVersion: page.resourceVersion))
        return page.resourceVersion
    }

    /// Applies one watch event to the store and tells it.
    private func apply(_ item: APIItem, deleted: Bool) {
        let key = item.object.key
        let before = store.withLock { store in
            deleted ? store.removeValue(forKey: key) : store.updateValue(item, forKey: key)
        }
        if deleted {
            // The object's final state, with the deletion's resourceVersion.
            handler(.deleted(item))
        } else if let before {
            handler(.updated(old: before, new: item))
        } else {
            handler(.added(item))
        }
    }
}
