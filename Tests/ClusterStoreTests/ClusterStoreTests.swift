import ClusterStore
import KubeClient
import KubeModel
import Testing

private func pod(_ name: String, ip: String, labels: [String: String] = ["app": "web"], phase: String = "Running") -> APIItem {
    APIItem(
        object: .pod(Pod(namespace: "shop", name: name, labels: labels, nodeName: "node-a", ips: [IPAddress(ip)!], phase: phase)),
        resourceVersion: "1", issues: [])
}

@Suite struct ClusterStoreTests {
    @Test func onlyChangesOfWhatPicketReadsMoveTheVersion() {
        let store = ClusterStore(nodeName: "node-a")
        #expect(store.handle(.added(pod("a", ip: "10.0.0.1")), of: .pods))
        #expect(store.version == 1)
        // A status update that leaves the projection equal (a new resourceVersion only).
        var same = pod("a", ip: "10.0.0.1")
        same.resourceVersion = "2"
        #expect(!store.handle(.updated(old: pod("a", ip: "10.0.0.1"), new: same), of: .pods))
        #expect(store.version == 1)
        #expect(store.handle(.updated(old: same, new: pod("a", ip: "10.0.0.1", labels: ["app": "db"])), of: .pods))
        #expect(store.handle(.deleted(pod("a", ip: "10.0.0.1")), of: .pods))
        #expect(!store.handle(.deleted(pod("a", ip: "10.0.0.1")), of: .pods), "deleting what is not held changes nothing")
        #expect(store.version == 3)
    }

    @Test func aSnapshotHoldsTheObjectsAndReportsEachArrivalOnce() {
        let store = ClusterStore(nodeName: "node-a")
        store.handle(.added(APIItem(object: .namespace(Namespace(name: "shop", labels: ["team": "a"])), resourceVersion: "1", issues: [])), of: .namespaces)
        store.handle(.added(pod("a", ip: "10.0.0.1")), of: .pods)
        store.handle(.added(pod("b", ip: "10.0.0.2")), of: .pods)
        let first = store.snapshot()
        #expect(first.cluster.pods.map(\.key.description) == ["shop/a", "shop/b"])
        #expect(first.cluster.labels(ofNamespace: "shop")["team"] == "a")
        #expect(first.arrivals.count == 3)
        #expect(first.version == 3)
        let second = store.snapshot()
        #expect(second.arrivals.isEmpty)
        #expect(second.version == 3)
    }

    @Test func onlyThisNodesNodeIsKept() {
        let store = ClusterStore(nodeName: "node-a")
        let other = APIItem(object: .node(Node(name: "node-b", podCIDRs: [CIDR("10.2.0.0/24")!])), resourceVersion: "1", issues: [])
        let own = APIItem(object: .node(Node(name: "node-a", podCIDRs: [CIDR("10.1.0.0/24")!])), resourceVersion: "1", issues: [])
        #expect(!store.handle(.added(other), of: .node))
        #expect(store.handle(.added(own), of: .node))
        #expect(store.snapshot().node?.podCIDRs.map(\.description) == ["10.1.0.0/24"])
    }

    @Test func syncedKindsAreTracked() {
        let store = ClusterStore(nodeName: "node-a")
        store.handle(.synced(resourceVersion: "5"), of: .pods)
        store.handle(.synced(resourceVersion: "5"), of: .node)
        #expect(store.synced == [.pods, .node])
    }

    @Test func issuesOfHeldObjectsAreReported() {
        let store = ClusterStore(nodeName: "node-a")
        var bad = pod("bad", ip: "10.0.0.9")
        bad.issues = [ManifestIssue(severity: .error, source: "https://api", object: "Pod shop/bad", field: "metadata.labels", message: "invalid")]
        store.handle(.added(bad), of: .pods)
        #expect(store.snapshot().issues.map(\.object) == ["Pod shop/bad"])
    }
}
