// A pod whose interface is up before Picket knows it (its address is in the node's pod CIDR but
// in no manifest): with the node's pod CIDRs given, nothing forwarded reaches or leaves it, same
// node or cross node, until it is known; then it is enforced like any other pod. Without them it
// is reachable, as kube-router leaves it.

import Foundation
import KubeModel
import Testing

extension KernelSuite {
    @Suite("Kernel: addresses of the node's pod CIDRs that are no known pod", .timeLimit(.minutes(3)))
    struct UnknownPodTests {
        static func pod(_ name: String, _ node: String, _ ip: String) -> Pod {
            Pod(namespace: "shop", name: name, labels: ["app": name], nodeName: node,
                ports: [ContainerPort(name: "http", number: 80)], ips: [IPAddress(ip)!], phase: "Running")
        }

        static let a = pod("a", "node-a", "10.244.1.10")
        static let b = pod("b", "node-a", "10.244.1.11")
        static let c = pod("c", "node-b", "10.244.2.10")
        static let unknown = pod("fresh", "node-a", "10.244.1.12")

        /// Whether TCP 80 from `source` to `destination` connects.
        func reaches(_ cluster: NetnsCluster, _ source: Pod, _ destination: String) throws -> Bool {
            let results = try cluster.probe(
                from: cluster.podNamespace[source.key]!, [.init(dst: destination, proto: "tcp", port: 80, src: nil)], timeout: 1.5)
            return results[0].ok
        }

        /// The reachability of every pair involving the unknown pod, and one pair of known pods.
        func matrix(_ cluster: NetnsCluster) throws -> [String: Bool] {
            let u = Self.unknown.ips[0].description
            return [
                "a->b": try reaches(cluster, Self.a, Self.b.ips[0].description),
                "a->c": try reaches(cluster, Self.a, Self.c.ips[0].description),
                "a->fresh (same node)": try reaches(cluster, Self.a, u),
                "c->fresh (cross node)": try reaches(cluster, Self.c, u),
                "fresh->a (same node)": try reaches(cluster, Self.unknown, Self.a.ips[0].description),
                "fresh->c (cross node)": try reaches(cluster, Self.unknown, Self.c.ips[0].description),
                "fresh->outside": try reaches(cluster, Self.unknown, OutsideLayout.inBlock4.description),
            ]
        }

        @Test("an unknown pod is cut off while unknown, enforced once known; without pod CIDRs it is open")
        func unknownPod() throws {
            let pods = [Self.a, Self.b, Self.c, Self.unknown]
            let cluster = try NetnsCluster.create(pods: pods, ports: [80])
            defer {
                for problem in cluster.shutdown() { Issue.record(Comment(rawValue: "teardown: \(problem)")) }
            }
            var manifests = ClusterManifests(namespaces: [Namespace(name: "shop")], pods: pods, policies: [])
            manifests.hiddenPods = [Self.unknown.key]
            manifests.blockUnknownPodIPs = true
            _ = try cluster.apply(manifests)
            let cutOff = try matrix(cluster)
            #expect(cutOff == [
                "a->b": true, "a->c": true, "a->fresh (same node)": false, "c->fresh (cross node)": false,
                "fresh->a (same node)": false, "fresh->c (cross node)": false, "fresh->outside": false,
            ], "unknown: \(cutOff)")

            // Known now (no policy selects it): reachable both ways.
            manifests.hiddenPods = []
            let known = try cluster.apply(manifests)
            #expect(known.notConverged.isEmpty, "\(known.notConverged)")
            let open = try matrix(cluster)
            #expect(open.values.allSatisfy { $0 }, "known: \(open)")

            // Unknown again, without the pod CIDRs: nothing stops it (the window Picket closes).
            manifests.hiddenPods = [Self.unknown.key]
            manifests.blockUnknownPodIPs = false
            _ = try cluster.apply(manifests)
            let unguarded = try matrix(cluster)
            #expect(unguarded.values.allSatisfy { $0 }, "without pod CIDRs: \(unguarded)")
        }
    }
}
