// A node holding hundreds of policy groups (each namespace with its own policy, as real
// clusters do), enforced in the kernel: the x/y/z model's pods each in their own ingress and
// egress group, among 300 more groups of pods that exist only in the manifests, chosen so that
// the model's groups on node-a hold the first, a middle and the last dispatch number. The whole
// matrix is probed (same node, cross node, both ways) and compared with the evaluator.

import Foundation
import KubeModel
import PolicyCompiler
import Testing

extension KernelSuite {
    @Suite("Kernel: a node holding 300+ policy groups, kernel vs evaluator", .timeLimit(.minutes(3)))
    struct ManyGroupsTests {
        /// 13 bits per direction (8,177 group numbers), clear of kube-proxy's 0x4000/0x8000.
        static let mask = "0xffff3ff0"
        /// Groups of pods that exist only in the manifests.
        static let phantomGroups = 300

        @Test("300+ ingress and egress groups on node-a, IPv4: first, middle and last groups probed both ways")
        func manyGroupsIPv4() throws {
            try run(dualStack: false)
        }

        @Test("300+ ingress and egress groups on node-a, dual-stack: first, middle and last groups probed both ways")
        func manyGroupsDualStack() throws {
            try run(dualStack: true)
        }

        /// Each model pod isolated both ways by a policy of its own: ingress from every pod on
        /// TCP 80 and UDP 81, egress to pods of namespaces x and y.
        static func modelPolicies() -> [String] {
            UpstreamModel.placement.map { key, _, _ in
                let parts = key.split(separator: "/").map(String.init)
                return UpstreamModel.policy(parts[0], "own-\(parts[1])", """
                    podSelector: {matchLabels: {pod: \(parts[1])}}
                    policyTypes: [Ingress, Egress]
                    ingress:
                    - from: [{namespaceSelector: {}}]
                      ports: [{protocol: TCP, port: 80}, {protocol: UDP, port: 81}]
                    egress:
                    - to: [{namespaceSelector: {matchExpressions: [{key: ns, operator: In, values: [x, y]}]}}]
                    """)
            }
        }

        /// A namespace with one pod on node-a (never probed) and its own policy, both ways.
        static func phantom(_ n: Int) -> (pod: Pod, policy: String) {
            let namespace = String(format: "g-%04d", n)
            let pod = Pod(
                namespace: namespace, name: "app", labels: ["app": "phantom"], nodeName: "node-a",
                ports: [], ips: [IPAddress("10.250.\(n / 250).\(n % 250 + 2)")!], phase: "Running")
            let policy = UpstreamModel.policy(namespace, "own-namespace", """
                podSelector: {}
                policyTypes: [Ingress, Egress]
                ingress:
                - from: [{podSelector: {}}]
                egress:
                - to: [{podSelector: {}}]
                """)
            return (pod, policy)
        }

        /// From a pool of candidates, `count` phantom groups whose ingress numbers lie between the
        /// model's lowest and highest group numbers on node-a, half below a middle one and half
        /// above: the model then holds the first, a middle and the last number.
        static func choosePhantoms(_ count: Int, model: [Pod], policies: [String], marks: MarkLayout) throws -> [Int] {
            let pool = (0..<(count * 8)).map(phantom)
            let snapshot = try snapshotOf(model + pool.map(\.pod), policies + pool.map(\.policy))
            let ruleset = compile(snapshot, node: "node-a", options: CompileOptions(marks: marks))
            let ingress = try #require(ruleset.dispatch.first { $0.direction == .ingress })
            let modelNumbers = ingress.groups.filter { !$0.chain.isEmpty && $0.policies.allSatisfy { !$0.namespace.hasPrefix("g-") } }.map(\.number).sorted()
            try #require(modelNumbers.count >= 3, "the model has \(modelNumbers.count) groups on node-a")
            let low = modelNumbers.first!, high = modelNumbers.last!, middle = modelNumbers[modelNumbers.count / 2]
            var below: [Int] = []
            var above: [Int] = []
            for group in ingress.groups {
                guard let key = group.policies.first, key.namespace.hasPrefix("g-"), let n = Int(key.namespace.dropFirst(2)) else { continue }
                if group.number > low && group.number < middle && below.count < count / 2 { below.append(n) }
                if group.number > middle && group.number < high && above.count < count - count / 2 { above.append(n) }
            }
            try #require(below.count + above.count == count, "the pool holds \(below.count) + \(above.count) phantom groups in range")
            return (below + above).sorted()
        }

        /// The snapshot of pods and policy documents, decoded as `picket apply` would.
        static func snapshotOf(_ pods: [Pod], _ policies: [String]) throws -> ClusterSnapshot {
            let manifests = ManifestDecoder.decode(policies.joined(separator: "\n---\n"), source: "policies")
            try #require(!manifests.hasErrors, "\(manifests.issues)")
            return ClusterSnapshot(namespaces: UpstreamModel.namespaces(), pods: pods, policies: manifests.policies)
        }

        private func run(dualStack: Bool) throws {
            let marks = try MarkLayout(mask: UInt32(Self.mask.dropFirst(2), radix: 16)!)
            let model = UpstreamModel.pods(dualStack: dualStack)
            let modelPolicies = Self.modelPolicies()
            let chosen = try Self.choosePhantoms(Self.phantomGroups, model: model, policies: modelPolicies, marks: marks)
            let phantoms = chosen.map(Self.phantom)
            let policies = modelPolicies + phantoms.map(\.policy)

            // The compiled dispatch: ranks of the model's groups among all of node-a's.
            let snapshot = try Self.snapshotOf(model + phantoms.map(\.pod), policies)
            let ruleset = compile(snapshot, node: "node-a", options: CompileOptions(marks: marks))
            let walker = DispatchWalker(ruleset)
            var deepest = 0
            for d in ruleset.dispatch {
                let numbers = d.groups.map(\.number).sorted()
                let ranks = d.groups.filter { !$0.policies[0].namespace.hasPrefix("g-") }.map { numbers.firstIndex(of: $0.number)! }.sorted()
                print("KernelTests many groups: node-a has \(d.groups.count) \(d.direction.field) groups; the model's at ranks \(ranks)")
                #expect(d.groups.count >= Self.phantomGroups + 3)
                if d.direction == .ingress {
                    #expect(ranks.first == 0 && ranks.last == numbers.count - 1, "the model holds the first and the last number")
                    #expect(ranks.contains { abs($0 - numbers.count / 2) <= numbers.count / 10 }, "and one near the middle: \(ranks)")
                }
                for group in d.groups {
                    let walk = walker.walk(d.direction, .v4, number: group.number)
                    #expect(walk.chain == group.chain)
                    deepest = max(deepest, walk.rules)
                }
            }
            print("KernelTests many groups: deepest dispatch walk \(deepest) rules")

            let cluster = try NetnsCluster.create(pods: model, ports: [80, 81])
            defer {
                for problem in cluster.shutdown() { Issue.record(Comment(rawValue: "teardown: \(problem)")) }
            }
            let name = "many groups (\(dualStack ? "dual-stack" : "IPv4"))"
            let run = OracleRun(name, cluster: cluster, selection: .everything, ports: UpstreamModel.probePorts)
            try run.baseline()
            var manifests = ClusterManifests(namespaces: UpstreamModel.namespaces(), pods: model, policies: policies)
            manifests.phantomPods = phantoms.map(\.pod)
            manifests.applyArguments = ["--mark-mask", Self.mask]
            try run.check("\(Self.phantomGroups) phantom groups plus the model's own, on node-a", manifests)
            // Groups come and go under the same rules: half the phantom policies removed.
            manifests.policies = modelPolicies + phantoms.enumerated().filter { $0.offset % 2 == 0 }.map(\.element.policy)
            try run.check("half the phantom groups removed", manifests)
            print(run.summary())
        }
    }
}
