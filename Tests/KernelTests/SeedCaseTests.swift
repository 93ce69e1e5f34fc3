// Kernel tests: the seed document's test table, enforced by Picket's compiled rules in a
// two-node cluster of network namespaces and checked with real TCP and UDP packets, for
// sources and destinations on the same node and on different nodes.
//
// Rules are applied with the built `picket apply` (the executor) in each node's namespace.
// Run (as root): see KernelSuite.swift.

import Foundation
import KubeModel
import Testing

extension KernelSuite {
    @Suite("Kernel: seed test table in a network-namespace cluster", .timeLimit(.minutes(2)))
    struct SeedCaseTests {
        @Test("(a) namespaces isolated from each other, pods within a namespace talk (policy 1 in each namespace)")
        func namespacesIsolatedInternalTraffic() throws {
            try run(KernelCase(
                title: "(a) Pods in different namespaces are isolated from one another, and pods in the same namespace can intercommunicate",
                policies: ["nsa", "nsb", "nsc"].map(SeedPolicies.internalOnly),
                ports: [.tcp(80), .udp(81)],
                expectAllowed: { flow in
                    switch flow.placement {
                    case .sameNode, .crossNode: flow.source.namespace == flow.destination.namespace
                    case .nodeToLocalPod: true  // the node's own traffic to its pods (kubelet probes)
                    case .nodeToRemotePod, .outsideToPod: false  // every pod is isolated for ingress; no ipBlock
                    case .podToOutside: true  // egress is not isolated
                    case .podToLocalNode, .podToRemoteNode: true  // egress is not isolated (not probed here)
                    }
                }))
        }

        @Test("(b) full isolation (policy 2 in each namespace)")
        func fullIsolation() throws {
            try run(KernelCase(
                title: "(b) Pods in the same and different namespaces are isolated from one another",
                policies: ["nsa", "nsb", "nsc"].map(SeedPolicies.denyAll),
                ports: [.tcp(80), .udp(80)],
                expectAllowed: { flow in
                    switch flow.placement {
                    case .sameNode, .crossNode: false
                    case .nodeToLocalPod: true
                    case .nodeToRemotePod, .outsideToPod: false
                    case .podToOutside: true
                    case .podToLocalNode, .podToRemoteNode: true  // egress is not isolated (not probed here)
                    }
                }))
        }

        @Test("(b') the node reaches its own pods under full isolation, not the other node's")
        func nodeToLocalPodUnderFullIsolation() throws {
            try run(KernelCase(
                title: "(b') Full isolation: node-to-local-pod traffic (kubelet probes) stays allowed",
                policies: ["nsa", "nsb", "nsc"].map(SeedPolicies.denyAll),
                ports: [.tcp(80), .tcp(81), .udp(80)],
                selection: .nodesOnly,
                expectAllowed: { flow in
                    switch flow.placement {
                    case .nodeToLocalPod: true
                    // From the other node the source is its underlay address: an ordinary source,
                    // which a deny-all ingress policy refuses.
                    case .nodeToRemotePod: false
                    default: false
                    }
                }))
        }

        @Test("(c) isolation plus a whitelist from nsb to nsa on TCP 6379 (policy 3 in nsa, policy 1 in nsb and nsc)")
        func whitelistNamespaceBToA() throws {
            try run(KernelCase(
                title: "(c) Pods in different namespaces are isolated from one another, and B can access A as specified in the whitelist",
                policies: [SeedPolicies.whitelistNsb6379, SeedPolicies.internalOnly("nsb"), SeedPolicies.internalOnly("nsc")],
                ports: [.tcp(6379), .udp(6379), .tcp(80)],
                expectAllowed: { flow in
                    switch flow.placement {
                    case .sameNode, .crossNode:
                        // nsa: only pods of namespaces labelled app: nsb, only on 6379/TCP (not even nsa itself).
                        if flow.destination.namespace == "nsa" { return flow.source.namespace == "nsb" && flow.port == .tcp(6379) }
                        return flow.source.namespace == flow.destination.namespace
                    case .nodeToLocalPod: return true
                    case .nodeToRemotePod, .outsideToPod: return false
                    case .podToOutside: return true
                    case .podToLocalNode, .podToRemoteNode: return true  // egress is not isolated (not probed here)
                    }
                }))
        }

        @Test("(d) nsa may go out only to 14.215.0.0/16 on TCP 5978 (policy 4)")
        func egressOnlyToCIDR() throws {
            try run(KernelCase(
                title: "(d) The specified namespace can access the specified CIDR outside the cluster, and all other external IPs are blocked",
                policies: [SeedPolicies.egressCIDR5978],
                ports: [.tcp(5978), .udp(5978), .tcp(80)],
                expectAllowed: { flow in
                    // nsa is isolated for egress only: what nsa pods send is limited; what they receive
                    // (and answer) is not.
                    if flow.source.namespace == "nsa" {
                        return flow.destination.isOutside(OutsideLayout.inBlock4) && flow.port == .tcp(5978)
                    }
                    return true
                }))
        }

        @Test("(e) isolation plus a whitelist from nsb to nsa's redis pods on TCP 6379")
        func whitelistNamespaceBToPodsAndPort() throws {
            try run(KernelCase(
                title: "(e) Pods under different namespaces are isolated from one another, and namespace B can access the corresponding pods and port in namespace A",
                policies: ["nsa", "nsb", "nsc"].map(SeedPolicies.internalOnly) + [SeedPolicies.whitelistNsbToRedis6379],
                ports: [.tcp(6379), .udp(6379), .tcp(80)],
                expectAllowed: { flow in
                    switch flow.placement {
                    case .sameNode, .crossNode:
                        if flow.source.namespace == flow.destination.namespace { return true }
                        return flow.source.namespace == "nsb" && flow.destination.namespace == "nsa"
                            && flow.destination.labels["app"] == "redis" && flow.port == .tcp(6379)
                    case .nodeToLocalPod: return true
                    case .nodeToRemotePod, .outsideToPod: return false
                    case .podToOutside: return true
                    case .podToLocalNode, .podToRemoteNode: return true  // egress is not isolated (not probed here)
                    }
                }))
        }

        @Test("(f) nsc accepts only TCP 80 from 14.215.0.0/16 (policy 5, in nsc)")
        func ingressOnlyFromCIDR() throws {
            try run(KernelCase(
                title: "(f) Seed policy 5: pods can only be accessed by the network endpoint with CIDR of 14.215.0.0/16 on the 80/TCP port",
                policies: [SeedPolicies.ingressCIDR80],
                ports: [.tcp(80), .udp(80), .tcp(81)],
                expectAllowed: { flow in
                    guard flow.destination.namespace == "nsc" else { return true }
                    switch flow.placement {
                    case .nodeToLocalPod: return true
                    default: return flow.source.isOutside(OutsideLayout.inBlock4) && flow.port == .tcp(80)
                    }
                }))
        }

        @Test("(a, dual-stack) policy 1 in each namespace, IPv4 and IPv6")
        func namespacesIsolatedDualStack() throws {
            try run(KernelCase(
                title: "(a, dual-stack) Pods in different namespaces are isolated from one another, pods in one namespace talk, over IPv4 and IPv6",
                policies: ["nsa", "nsb", "nsc"].map(SeedPolicies.internalOnly),
                ports: [.tcp(80), .udp(81)],
                dualStack: true,
                expectAllowed: { flow in
                    switch flow.placement {
                    case .sameNode, .crossNode: flow.source.namespace == flow.destination.namespace
                    case .nodeToLocalPod: true
                    case .nodeToRemotePod, .outsideToPod: false
                    case .podToOutside: true
                    case .podToLocalNode, .podToRemoteNode: true  // egress is not isolated (not probed here)
                    }
                }))
        }

        @Test("(c, dual-stack) policy 3 in nsa, policy 1 in nsb and nsc, IPv4 and IPv6")
        func whitelistNamespaceBToADualStack() throws {
            try run(KernelCase(
                title: "(c, dual-stack) Pods in different namespaces are isolated from one another, and B can access A as specified in the whitelist, over IPv4 and IPv6",
                policies: [SeedPolicies.whitelistNsb6379, SeedPolicies.internalOnly("nsb"), SeedPolicies.internalOnly("nsc")],
                ports: [.tcp(6379), .udp(6379), .tcp(80)],
                dualStack: true,
                expectAllowed: { flow in
                    switch flow.placement {
                    case .sameNode, .crossNode:
                        if flow.destination.namespace == "nsa" { return flow.source.namespace == "nsb" && flow.port == .tcp(6379) }
                        return flow.source.namespace == flow.destination.namespace
                    case .nodeToLocalPod: return true
                    case .nodeToRemotePod, .outsideToPod: return false
                    case .podToOutside: return true
                    case .podToLocalNode, .podToRemoteNode: return true  // egress is not isolated (not probed here)
                    }
                }))
        }

        @Test("(d, dual-stack) policy 4, IPv4 and IPv6: nsa may go out only to 14.215.0.0/16 on TCP 5978")
        func egressOnlyToCIDRDualStack() throws {
            try run(KernelCase(
                title: "(d, dual-stack) The specified namespace can access the specified CIDR outside the cluster, over IPv4 and IPv6",
                policies: [SeedPolicies.egressCIDR5978],
                ports: [.tcp(5978), .udp(5978), .tcp(80)],
                dualStack: true,
                expectAllowed: { flow in
                    // The ipBlock is IPv4: over IPv6 nsa pods may send nothing at all. What they
                    // receive (and answer) is not limited, in either family.
                    if flow.source.namespace == "nsa" {
                        return flow.destination.isOutside(OutsideLayout.inBlock4) && flow.port == .tcp(5978)
                    }
                    return true
                }))
        }

        // MARK: - Running a case

        /// Builds the cluster, checks that everything is reachable without policies, applies the
        /// compiled rules on both nodes, probes the matrix and reports every mismatch.
        private func run(_ kase: KernelCase) throws {
            let started = Date()
            let pods = SeedCluster.pods(dualStack: kase.dualStack)
            let manifests = ClusterManifests(namespaces: SeedCluster.namespaces, pods: pods, policies: kase.policies)
            let served = [80, 81] + kase.ports.map(\.number)

            let cluster = try NetnsCluster.create(pods: pods, ports: served)
            defer {
                for problem in cluster.shutdown() { Issue.record(Comment(rawValue: "teardown: \(problem)")) }
            }
            let built = Date()
            let flows = cluster.flows(kase.selection, ports: kase.ports)

            let baseline = try cluster.matrix(flows) { _ in true }
            guard baseline.mismatches.isEmpty else {
                let lines = baseline.mismatches.prefix(30).map { "  \($0)" }.joined(separator: "\n")
                Issue.record("""
                    \(kase.title)
                    baseline without any policy: \(baseline.mismatches.count) of \(flows.count) probes failed; \
                    the harness's cluster is broken, the policy was not tested:
                    \(lines)
                    """)
                return
            }

            let applied = try cluster.apply(manifests)
            let result = try cluster.matrix(flows, expectAllowed: kase.expectAllowed)

            print("""
                KernelTests \(kase.title)
                  cluster \(cluster.prefix)* built in \(seconds(built.timeIntervalSince(started))), \
                baseline \(baseline.flows.count) probes all allowed in \(seconds(baseline.seconds)), \
                rules applied with picket apply in \(seconds(applied.seconds))
                  \(result.summary)
                """)

            for rules in applied.notConverged {
                Issue.record(Comment(rawValue: "\(kase.title)\nthe executor did not converge on \(rules.node): a second `picket apply` printed\n\(rules.again)"))
            }
            let unexplained = result.mismatches
            if !unexplained.isEmpty {
                Issue.record(Comment(rawValue: list(kase, unexplained) + rules(unexplained, applied.nodes, cluster)))
            }
        }

        /// The case and its mismatches, one line each.
        private func list(_ kase: KernelCase, _ mismatches: [Mismatch]) -> String {
            "\(kase.title)\n\(mismatches.count) mismatches:\n" + mismatches.map { "  \($0)\n" }.joined()
        }

        /// The applied rules and the live counters of the nodes the mismatches involve.
        private func rules(_ mismatches: [Mismatch], _ applied: [AppliedRules], _ cluster: NetnsCluster) -> String {
            var text = ""
            let nodes = Set(mismatches.flatMap { [$0.flow.source.nodeName, $0.flow.destination.nodeName].compactMap { $0 } })
            for rules in applied where nodes.contains(rules.node) {
                text += "--- picket apply on \(rules.node) printed ---\n\(rules.report)"
                text += "--- live on \(rules.node) (packet counters show the rule that dropped) ---\n\(cluster.kernelState(node: rules.node))"
            }
            return text
        }

        private func seconds(_ value: Double) -> String { String(format: "%.1f s", value) }
    }
}
