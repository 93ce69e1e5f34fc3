import Foundation
import Testing

/// `picket diff` and `picket explain`, driven through the built binary.
@Suite struct DiffExplainContractTests {
    func fixture(_ name: String) -> String { packageRoot.appendingPathComponent("Fixtures/\(name)/input").path }

    @Test("diff: exit 0 and quiet when nothing changes")
    func unchanged() throws {
        let result = try run(DryRunContractTests.picket, ["diff", "--before", fixture("demo"), "--after", fixture("demo")])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "rules: no change\nconnectivity: no change\n")
    }

    @Test("diff: exit 1 with rule diffs and grouped connectivity changes")
    func changed() throws {
        let result = try run(DryRunContractTests.picket, [
            "diff", "--node", "node-a", "--before", fixture("seed-1-namespace-internal-only"), "--after", fixture("seed-3-whitelist-nsb-6379"),
        ])
        #expect(result.status == 1)
        #expect(result.stdout.contains("--- before/node-a/iptables.restore\n+++ after/node-a/iptables.restore\n"))
        #expect(!result.stdout.contains("node-b/"))
        #expect(result.stdout.contains("  nsa/redis-a TCP/6379 (IPv4)\n    now allowed from: nsb/client-a, nsb/client-b\n    now denied from:  nsa/redis-b\n"))
    }

    @Test("diff: a pod present in one state only is judged in both (Fixtures/diff-new-namespace-pod)")
    func oneSidedPods() throws {
        let folder = packageRoot.appendingPathComponent("Fixtures/diff-new-namespace-pod")
        let before = folder.appendingPathComponent("before").path
        let after = folder.appendingPathComponent("after").path
        let added = try run(DryRunContractTests.picket, ["diff", "--before", before, "--after", after])
        #expect(added.status == 1, "\(added.stderr)")
        #expect(added.stdout.hasSuffix("connectivity:\n  shop/db TCP/5432 (IPv4)\n    now allowed from: blue/api\n"), "\(added.stdout)")
        // The mirror: the pod and its namespace removed, the policy narrowed.
        let removed = try run(DryRunContractTests.picket, ["diff", "--before", after, "--after", before])
        #expect(removed.status == 1, "\(removed.stderr)")
        #expect(removed.stdout.hasSuffix("connectivity:\n  shop/db TCP/5432 (IPv4)\n    now denied from:  blue/api\n"), "\(removed.stdout)")
    }

    @Test("diff --format json is machine-readable")
    func json() throws {
        let result = try run(DryRunContractTests.picket, [
            "diff", "--format", "json", "--before", fixture("seed-2-namespace-deny-all"), "--after", fixture("seed-1-namespace-internal-only"),
        ])
        #expect(result.status == 1)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let flows = object?["connectivity"] as? [[String: String]] ?? []
        #expect(!flows.isEmpty)
        #expect(flows.allSatisfy { $0["before"] == "denied" && $0["after"] == "allowed" })
        #expect((object?["rules"] as? [[String: String]])?.isEmpty == false)
    }

    @Test("diff: exit 2 on invalid input")
    func invalid() throws {
        let result = try run(DryRunContractTests.picket, ["diff", "--before", fixture("demo"), "--after", fixture("invalid-policies")])
        #expect(result.status == 2)
        #expect(result.stderr.contains("NetworkPolicy shop/invalid-bad-cidr: spec.ingress[0].from[0].ipBlock.cidr"))
    }

    @Test("explain: allowed exits 0, denied exits 1, each with the policies behind it")
    func explain() throws {
        let allowed = try run(DryRunContractTests.picket, ["explain", "--from", fixture("seed-3-whitelist-nsb-6379"), "nsb/client-a", "nsa/redis-a", "6379/tcp"])
        #expect(allowed.status == 0)
        #expect(allowed.stdout.contains("admitted by nsa/npa ingress[0]"))
        let denied = try run(DryRunContractTests.picket, ["explain", "--from", fixture("seed-3-whitelist-nsb-6379"), "nsa/redis-b", "10.244.1.10", "80"])
        #expect(denied.status == 1)
        #expect(denied.stdout.hasPrefix("denied: nsa/redis-a is isolated for ingress by nsa/npa"))
        let unknown = try run(DryRunContractTests.picket, ["explain", "--from", fixture("seed-3-whitelist-nsb-6379"), "nsa/nobody", "nsa/redis-a", "80"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("no pod nsa/nobody"))
    }
}
