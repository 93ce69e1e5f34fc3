import Executor
import KubeModel
import PolicyCompiler
import Testing

/// Which conntrack entries a plan deletes: pure, no kernel. `revoke` holds addresses; an entry
/// goes when either end is one of them. A flow that may have lost its admission must be covered
/// (a local pod that became isolated or whose group changed, or the peer address a policy no
/// longer admits: deleting entries involving the peer's address ends the local pod's flows with
/// it); pods whose policies only gained peers must not be (their flows stay).
@Suite("Plan: revocations")
struct RevocationTests {
    /// The addresses `Plan` revokes going from `before` to `after`.
    func revoked(_ before: Shop, _ after: Shop) -> Set<IPAddress> {
        Plan(from: NodeState(before.ruleset), to: NodeState(after.ruleset)).revoke
    }

    let web = IPAddress("10.244.1.2")!
    let api = IPAddress("10.244.1.3")!
    let db = IPAddress("10.244.1.4")!
    let client = IPAddress("10.244.2.5")!

    @Test("nothing changes: nothing is revoked, the plan is empty")
    func unchanged() {
        let plan = Plan(from: NodeState(Shop().ruleset), to: NodeState(Shop().ruleset))
        #expect(plan.isEmpty)
        #expect(plan.revoke.isEmpty)
    }

    @Test("a local pod that becomes isolated is revoked")
    func becomesIsolated() {
        let before = Shop.with { $0.policies.removeAll { $0.key.name == "db-allow-api" } }
        #expect(revoked(before, Shop()) == [db])
    }

    @Test("a local pod whose policy loses a peer: its flows with that peer are revoked (by the peer's address), no other pod's")
    func losesPeer() {
        let after = Shop.with { $0.pods.removeAll { $0.key.name == "client" } }
        #expect(revoked(Shop(), after) == [client])
    }

    @Test("a peer moves to another address: the old address is revoked")
    func peerMoves() {
        let after = Shop.with { $0.pod("client") { $0.ips = [IPAddress("10.244.2.6")!] } }
        #expect(revoked(Shop(), after) == [client])
    }

    @Test("a local egress pod whose policy loses a destination: the destination's address is revoked")
    func losesDestination() {
        let after = Shop.with { $0.pod("db") { $0.labels = ["app": "db-old"] } }
        // db left api-egress's destinations (and db-allow-api no longer selects it: db is open now).
        #expect(revoked(Shop(), after) == [db])
    }

    @Test("a local pod whose policy loses a port is revoked")
    func losesPort() {
        let after = Shop.with { shop in
            shop.policies = shop.policies.map { policy in
                guard policy.key.name == "web-allow-client" else { return policy }
                return makePolicy("shop", "web-allow-client") { spec in
                    spec.podSelector = app("web")
                    spec.ingress = [.init(peers: [.init(podSelector: app("client"))], ports: [tcp(443)])]
                }
            }
        }
        #expect(revoked(Shop(), after).contains(web))
        #expect(!revoked(Shop(), after).contains(db))
    }

    @Test("pods whose policies only gained peers are not revoked")
    func onlyGainsPeers() {
        let after = Shop.with { shop in
            shop.pods.append(makePod("shop", "client2", node: "node-b", ip: "10.244.2.7", labels: ["app": "client"]))
            shop.pods.append(makePod("shop", "db2", node: "node-b", ip: "10.244.2.8", labels: ["app": "db"]))
        }
        #expect(revoked(Shop(), after).isEmpty)
    }

    @Test("a pod that stops being isolated (its policy deleted) is not revoked; the others stay untouched")
    func becomesOpen() {
        let after = Shop.with { $0.policies.removeAll { $0.key.name == "web-allow-client" } }
        #expect(revoked(Shop(), after).isEmpty)
    }

    @Test("a new local pod selected by an existing policy is revoked; its group mates are not")
    func newLocalPod() {
        let after = Shop.with {
            $0.pods.append(makePod("shop", "web2", ip: "10.244.1.20", labels: ["app": "web"]))
        }
        #expect(revoked(Shop(), after) == [IPAddress("10.244.1.20")!])
    }

    @Test("a pod that moves into a group with one more policy is revoked (over-approximation is safe)")
    func changesGroup() {
        let after = Shop.with { $0.policies.append(apiAllowWeb) }
        // api becomes isolated for ingress; its egress group did not change.
        #expect(revoked(Shop(), after) == [api])
    }

    @Test("dual-stack: both addresses of a lost peer are revoked")
    func dualStack() {
        let before = Shop.with { $0.dualStack() }
        let after = Shop.with { $0.dualStack(); $0.pods.removeAll { $0.key.name == "client" } }
        #expect(revoked(before, after) == [client, IPAddress("fd00:10:244:2::5")!])
    }
}
