import Foundation
import KubeClient
import KubeModel
import KubeTestSupport
import Testing

/// Informer options for tests: quick retries, a short hung-watch limit (the test server sends
/// bookmarks every 0.5 s).
private func testOptions(pageSize: Int = 100, idle: Duration = .seconds(5)) -> InformerOptions {
    var options = InformerOptions()
    options.pageSize = pageSize
    options.idleTimeout = idle
    options.backoff = Backoff(initial: .milliseconds(50), cap: .seconds(1))
    return options
}

/// `count` pods in namespace `ns`, named p0000...
private func pods(_ count: Int, ns: String = "shop", prefix: String = "p") -> [[String: Any]] {
    (0..<count).map { i in
        TestObjects.pod(ns, String(format: "\(prefix)%05d", i), ip: "10.\(1 + i / 65536).\((i / 256) % 256).\(i % 256)", labels: ["app": "web"])
    }
}

/// Starts an informer for `resource` and waits for its first sync.
private func syncedInformer(
    _ server: TestAPIServer, _ resource: APIResource = .pods, options: InformerOptions = testOptions(), recorder: Recorder
) throws -> Informer {
    let informer = Informer(client: APIClient(connection: server.connection()), resource: resource, options: options, handler: recorder.handler)
    informer.start()
    guard informer.waitForSync(timeout: .seconds(30)) else {
        informer.stop()
        throw TestServerError(description: "no sync: \(recorder.events.map(\.summary)) \(informer.status.lastError?.description ?? "")")
    }
    return informer
}

@Suite(.serialized, .enabled(if: hasTestServerTools)) struct InformerTests {
    @Test func initialSyncListsEveryPageThenWatches() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop")] + pods(1234))
        let recorder = Recorder()
        let informer = try syncedInformer(server, recorder: recorder)
        defer { informer.stop() }
        #expect(informer.items.count == 1234)
        let events = recorder.events
        #expect(events.changes.count == 1234)
        #expect(events.changes.allSatisfy { $0.hasPrefix("added shop/p") })
        #expect(events.firstIndex { $0.summary == "synced" } == 1234)
        #expect(try server.counter("lists") >= 13)  // 1,234 pods in pages of 100
        #expect(recorder.wait { _ in ((try? server.counter("openWatches")) ?? 0) == 1 })
    }

    @Test func everyEventKindArrivesAndBookmarksAdvanceTheResourceVersion() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop")] + pods(3))
        let recorder = Recorder()
        let informer = try syncedInformer(server, recorder: recorder)
        defer { informer.stop() }
        recorder.clear()
        try server.apply([TestObjects.pod("shop", "new", ip: "10.9.0.1")])
        try server.apply([TestObjects.pod("shop", "p00001", ip: "10.1.0.1", labels: ["app": "db"])])
        try server.delete([("Pod", "shop", "p00002")])
        #expect(recorder.wait { $0.changes == ["added shop/new", "updated shop/p00001", "deleted shop/p00002"] })
        if case .updated(let old, let new)? = recorder.events.first(where: { $0.summary == "updated shop/p00001" }),
            case .pod(let before) = old.object, case .pod(let after) = new.object
        {
            #expect(before.labels["app"] == "web")
            #expect(after.labels["app"] == "db")
        } else {
            Issue.record("no update with both states")
        }
        #expect(informer.items.keys.sorted().map(\.description) == ["shop/new", "shop/p00000", "shop/p00001"])
        // Changes elsewhere (namespaces) move the resourceVersion: bookmarks carry it to the pod watch.
        let version = try server.apply([TestObjects.namespace("other")])
        #expect(recorder.wait { _ in informer.status.resourceVersion == version })
    }

    @Test func aStreamDroppedMidEventResumesFromTheLastResourceVersion() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop")] + pods(5))
        let recorder = Recorder()
        let informer = try syncedInformer(server, recorder: recorder)
        defer { informer.stop() }
        recorder.clear()
        let listsBefore = try server.counter("lists")
        // The watch opens just after the sync; a drop before it is open would cut nothing.
        #expect(recorder.wait { _ in ((try? server.counter("openWatches")) ?? 0) == 1 })
        try server.control("/drop-streams?mid-event=1", [:])
        try server.apply([TestObjects.pod("shop", "after-drop", ip: "10.9.0.2")])
        #expect(recorder.wait { $0.count("added shop/after-drop") == 1 })
        try server.apply([TestObjects.pod("shop", "later", ip: "10.9.0.3")])
        #expect(recorder.wait { $0.changes == ["added shop/after-drop", "added shop/later"] })
        #expect(recorder.events.count("restarted") >= 1)
        #expect(try server.counter("lists") == listsBefore)  // resumed, not listed again
        #expect(informer.items.count == 7)
    }

    @Test func aDeletionCutMidEventIsDeliveredAfterTheResume() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop")])
        let recorder = Recorder()
        let informer = try syncedInformer(server, .networkPolicies, recorder: recorder)
        defer { informer.stop() }
        try server.apply([TestObjects.denyIngress("shop", "one", app: "a"), TestObjects.denyIngress("shop", "two", app: "b")])
        try server.apply([TestObjects.namespace("other")])  // a change of another kind moves the resourceVersion
        #expect(recorder.wait { $0.changes.count == 2 })
        usleep(1_200_000)  // bookmarks
        #expect(recorder.wait { _ in ((try? server.counter("openWatches")) ?? 0) == 1 })
        try server.control("/drop-streams?mid-event=1", [:])
        let version = try server.delete([("NetworkPolicy", "shop", "one")])
        #expect(recorder.wait { $0.changes == ["added shop/one", "added shop/two", "deleted shop/one"] }, "\(recorder.events.map(\.summary))")
        #expect(recorder.wait { _ in informer.status.resourceVersion == version }, "\(informer.status.resourceVersion) vs \(version)")
        if case .deleted(let item)? = recorder.events.last(where: \.isChange) { #expect(item.resourceVersion == version) }
    }

    @Test func aServerRestartIsRiddenOutWithoutAList() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop")] + pods(5))
        let recorder = Recorder()
        let informer = try syncedInformer(server, recorder: recorder)
        defer { informer.stop() }
        recorder.clear()
        let listsBefore = try server.counter("lists")
        try server.control("/stop", [:])
        try server.apply([TestObjects.pod("shop", "while-down", ip: "10.9.0.4")])
        // The open watch breaks, then reconnecting is refused, with backoff.
        #expect(recorder.wait { events in
            events.contains { if case .failed(let error, _) = $0 { error.kind == .transport(.refused) } else { false } }
        })
        for case .failed(let error, _) in recorder.events { #expect(error.description.hasPrefix(server.api)) }
        #expect(!informer.status.synced || informer.status.lastError != nil)
        try server.control("/start", [:])
        #expect(recorder.wait { $0.changes == ["added shop/while-down"] })
        #expect(try server.counter("lists") == listsBefore)
    }

    @Test(arguments: ["event", "http"])
    func compactedHistoryListsAgainAndTellsOnlyRealDifferences(mode: String) throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.control("/watch410", ["mode": mode])
        try server.apply([TestObjects.namespace("shop")] + pods(50))
        let recorder = Recorder()
        let informer = try syncedInformer(server, recorder: recorder)
        defer { informer.stop() }
        recorder.clear()
        try server.control("/stop", [:])
        try server.apply([TestObjects.pod("shop", "p00007", ip: "10.1.0.7", labels: ["app": "changed"])])
        try server.apply([TestObjects.pod("shop", "created", ip: "10.9.0.5")])
        try server.delete([("Pod", "shop", "p00011")])
        try server.control("/compact", [:])
        try server.control("/start", [:])
        #expect(recorder.wait { $0.count("synced") == 1 })
        #expect(recorder.events.count("relisting") == 1)
        #expect(recorder.events.changes.sorted() == ["added shop/created", "deleted shop/p00011", "updated shop/p00007"])
        #expect(informer.items.count == 50)
        // And the watch goes on from the new list.
        try server.apply([TestObjects.pod("shop", "after", ip: "10.9.0.6")])
        #expect(recorder.wait { $0.changes.last == "added shop/after" })
    }

    @Test func aHungWatchIsRestarted() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop")] + pods(2))
        let recorder = Recorder()
        let informer = try syncedInformer(server, options: testOptions(idle: .seconds(2)), recorder: recorder)
        defer { informer.stop() }
        recorder.clear()
        let watches = try server.counter("watches")
        try server.control("/hang", ["on": true])
        #expect(recorder.wait { events in
            events.contains { if case .failed(let error, _) = $0 { return error.kind == .transport(.hung) } else { return false } }
        })
        try server.control("/hang", ["on": false])
        try server.apply([TestObjects.pod("shop", "after-hang", ip: "10.9.0.7")])
        #expect(recorder.wait { $0.changes == ["added shop/after-hang"] })
        #expect(try server.counter("watches") > watches)
    }

    @Test func aBurstOfTenThousandEventsArrivesInOrder() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([TestObjects.namespace("shop")])
        let recorder = Recorder()
        let informer = try syncedInformer(server, recorder: recorder)
        defer { informer.stop() }
        recorder.clear()
        let burst = pods(10_000, prefix: "b")
        try server.apply(burst)
        #expect(recorder.wait(timeout: .seconds(120)) { $0.filter(\.isChange).count >= 10_000 })
        let changes = recorder.events.filter(\.isChange)
        #expect(changes.map(\.summary) == burst.map { "added shop/\(($0["metadata"] as! [String: Any])["name"] as! String)" })
        var versions: [Int] = []
        for case .added(let item) in changes { versions.append(Int(item.resourceVersion) ?? -1) }
        #expect(versions == versions.sorted() && Set(versions).count == versions.count)
        #expect(informer.items.count == 10_000)
    }

    @Test func theNodeInformerSeesOnlyItsNode() throws {
        let server = try TestAPIServer()
        defer { server.stop() }
        try server.apply([
            TestObjects.node("node-a", podCIDRs: ["10.1.0.0/24", "fd00:1::/64"], address: "192.0.2.1"),
            TestObjects.node("node-b", podCIDRs: ["10.2.0.0/24"], address: "192.0.2.2"),
        ])
        let recorder = Recorder()
        let informer = try syncedInformer(server, .node("node-a"), recorder: recorder)
        defer { informer.stop() }
        #expect(informer.items.keys.map(\.name) == ["node-a"])
        guard case .node(let node)? = informer.items.values.first?.object else {
            Issue.record("no node")
            return
        }
        #expect(node.podCIDRs.map(\.description) == ["10.1.0.0/24", "fd00:1::/64"])
        try server.apply([TestObjects.node("node-b", podCIDRs: ["10.3.0.0/24"], address: "192.0.2.2")])
        try server.apply([TestObjects.node("node-a", podCIDRs: ["10.4.0.0/24"], address: "192.0.2.1")])
        #expect(recorder.wait { $0.changes.suffix(1) == ["updated /node-a"] })
        #expect(!recorder.events.changes.contains { $0.contains("node-b") })
    }
}
