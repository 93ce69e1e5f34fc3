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

    @Test("a relist or an event that changes nothing compiled moves the resourceVersions, not the version")
    func resourceVersionsOfAnUnchangedVersion() {
        let store = ClusterStore(nodeName: "node-a")
        store.handle(.added(pod("a", ip: "10.0.0.1")), of: .pods)
        let version = store.version
        #expect(store.resourceVersions(ifVersion: version) == [.pods: "1"])
        // A relist after a 410 that finds the same objects: a newer list resourceVersion.
        #expect(!store.handle(.synced(resourceVersion: "22"), of: .pods))
        #expect(store.version == version)
        #expect(store.resourceVersions(ifVersion: version) == [.pods: "22"])
        var same = pod("a", ip: "10.0.0.1")
        same.resourceVersion = "23"
        #expect(!store.handle(.updated(old: pod("a", ip: "10.0.0.1"), new: same), of: .pods))
        #expect(store.resourceVersions(ifVersion: version) == [.pods: "23"])
        // Once the version moves, the old one's resourceVersions are no longer asked for.
        #expect(store.handle(.added(pod("b", ip: "10.0.0.2")), of: .pods))
        #expect(store.resourceVersions(ifVersion: version) == nil)
        #expect(store.resourceVersions(ifVersion: store.version) == [.pods: "1"])
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

/// The store's snapshot, built from its sorted, once-validated tables, against the one the
/// manifest path builds from the same objects (`ClusterSnapshot(namespaces:pods:policies:)`).
@Suite struct IncrementalSnapshotTests {
    /// A small deterministic generator (SplitMix64).
    struct Random {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
    }

    static let namespaceNames = ["alpha", "beta", "gamma", "delta", "Bad_NS"]

    static func randomPod(_ random: inout Random) -> Pod {
        let namespace = namespaceNames[random.next(namespaceNames.count)]
        let labels: [String: String] = [
            "app": ["web", "db", "cache"][random.next(3)],
            // Sometimes a value the API server would refuse: the pod is selected but never a peer.
            "tier": random.next(8) == 0 ? "not valid!" : ["a", "b"][random.next(2)],
        ]
        let phase = ["Running", "Running", "Running", "Pending", "Succeeded", "Failed"][random.next(6)]
        let ips = random.next(10) == 0 ? [] : [IPAddress("10.1.\(random.next(4)).\(2 + random.next(200))")!]
        return Pod(
            namespace: namespace, name: "pod-\(random.next(40))", labels: labels, nodeName: "node-\(random.next(3))",
            hostNetwork: random.next(12) == 0, ips: ips, phase: phase)
    }

    static func randomPolicy(_ random: inout Random) -> Policy {
        var spec = NetworkPolicy.Spec(podSelector: LabelSelector(matchLabels: ["app": ["web", "db"][random.next(2)]]))
        spec.policyTypes = ["Ingress"]
        return Policy(validating: NetworkPolicy(namespace: namespaceNames[random.next(4)], name: "policy-\(random.next(8))", spec: spec))
    }

    static func randomNamespace(_ random: inout Random) -> Namespace {
        // Only some namespaces have objects; the others are implied by their pods and policies.
        let name = namespaceNames[random.next(3) + (random.next(2) == 0 ? 0 : 2)]
        let team = random.next(6) == 0 ? "-invalid-" : ["red", "blue"][random.next(2)]
        return Namespace(name: name, labels: [Namespace.nameLabel: name, "team": team])
    }

    @Test("after every event of a random stream, the store's snapshot is the one built from scratch")
    func matchesTheSnapshotBuiltFromScratch() {
        let store = ClusterStore(nodeName: "node-0")
        var random = Random(state: 7)
        var namespaces: [String: Namespace] = [:]
        var pods: [ObjectKey: Pod] = [:]
        var policies: [ObjectKey: Policy] = [:]
        var compared = 0
        for step in 0..<3_000 {
            let delete = random.next(4) == 0
            switch random.next(10) {
            case 0:
                let namespace = Self.randomNamespace(&random)
                let item = APIItem(object: .namespace(namespace), resourceVersion: "\(step)")
                if delete {
                    store.handle(.deleted(item), of: .namespaces)
                    namespaces[namespace.name] = nil
                } else {
                    store.handle(.added(item), of: .namespaces)
                    namespaces[namespace.name] = namespace
                }
            case 1, 2:
                let policy = Self.randomPolicy(&random)
                let item = APIItem(object: .networkPolicy(policy), resourceVersion: "\(step)")
                if delete {
                    store.handle(.deleted(item), of: .networkPolicies)
                    policies[policy.key] = nil
                } else {
                    store.handle(.added(item), of: .networkPolicies)
                    policies[policy.key] = policy
                }
            default:
                let pod = Self.randomPod(&random)
                let item = APIItem(object: .pod(pod), resourceVersion: "\(step)")
                if delete {
                    store.handle(.deleted(item), of: .pods)
                    pods[pod.key] = nil
                } else {
                    store.handle(.updated(old: item, new: item), of: .pods)
                    pods[pod.key] = pod
                }
            }
            guard step % 7 == 0 else { continue }
            let got = store.snapshot().cluster
            let want = ClusterSnapshot(namespaces: Array(namespaces.values), pods: Array(pods.values), policies: Array(policies.values))
            #expect(got.pods == want.pods)
            #expect(got.policies == want.policies)
            #expect(got.namespaces == want.namespaces)
            #expect(got.endpoints == want.endpoints)
            #expect(got.endpointsByNamespace == want.endpointsByNamespace)
            #expect(got.policiesByNamespace == want.policiesByNamespace)
            #expect(got.namespaceNames == want.namespaceNames)
            #expect(got.peerEligible == want.peerEligible)
            #expect(got.namespaces(matching: Selector.everything) == want.namespaces(matching: Selector.everything))
            compared += 1
        }
        // The stream reached the cases that matter.
        let last = store.snapshot().cluster
        #expect(compared > 400)
        #expect(last.peerEligible.contains(false) && last.peerEligible.contains(true))
        #expect(last.pods.count > last.endpoints.count)
        #expect(last.namespaceNames.contains("Bad_NS") && !last.namespaces(matching: Selector.everything).contains("Bad_NS"))
    }
}
