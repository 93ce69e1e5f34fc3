// The standard model of the upstream Kubernetes NetworkPolicy e2e suite
// (kubernetes/kubernetes test/e2e/network/netpol): namespaces x, y, z labelled ns=x|y|z (and
// kubernetes.io/metadata.name), pods a, b, c in each labelled pod=a|b|c, serving ports 80 and 81
// over TCP and UDP (container ports named serve-80-tcp, serve-81-udp, ...; SCTP ports are
// declared too but cannot be probed in this kernel). Pods are spread over the two nodes so
// that every namespace has pods on both and same-node and cross-node pairs exist:
//
//   node-a: x/a x/b y/b z/a z/c        node-b: x/c y/a y/c z/b
//
// The cases re-state the upstream tests' policies in YAML written for this suite; their
// expectations come from the evaluator, and every step probes the whole matrix (all pods, the
// nodes, the outside hosts, TCP and UDP on 80 and 81), more than the upstream truth tables.

import KubeModel

/// The x/y/z model's namespaces, pods and addresses.
enum UpstreamModel {
    /// The namespaces, in order.
    static let namespaceNames = ["x", "y", "z"]

    /// (pod key, node, host number): IPv4 10.244.<node>.<host>, IPv6 fd00:10:244:<node>::<host>.
    static let placement: [(String, String, Int)] = [
        ("x/a", "node-a", 10), ("x/b", "node-a", 11), ("x/c", "node-b", 12),
        ("y/a", "node-b", 20), ("y/b", "node-a", 21), ("y/c", "node-b", 22),
        ("z/a", "node-a", 30), ("z/b", "node-b", 31), ("z/c", "node-a", 32),
    ]

    /// The probed ports: 80 and 81 over TCP and UDP.
    static let probePorts: [ProbePort] = [.tcp(80), .tcp(81), .udp(80), .udp(81)]

    /// Every pod's container ports, as upstream names them (serve-<port>-<protocol>).
    static let containerPorts: [ContainerPort] = [80, 81].flatMap { port in
        [TransportProtocol.tcp, .udp, .sctp].map { ContainerPort(name: "serve-\(port)-\($0.lowercased)", number: port, proto: $0) }
    }

    /// A pod's address in `family`.
    static func address(_ key: String, _ family: IPAddress.Family) -> IPAddress {
        let (_, node, host) = placement.first { $0.0 == key }!
        let n = node == "node-a" ? 1 : 2
        return IPAddress(family == .v4 ? "10.244.\(n).\(host)" : "fd00:10:244:\(n)::\(host)")!
    }

    /// The pods with their default labels (pod=<name>), plus `extra` labels by pod key.
    static func pods(dualStack: Bool, extra: [String: [String: String]] = [:], ports: [String: [ContainerPort]] = [:]) -> [Pod] {
        placement.map { key, node, _ in
            let parts = key.split(separator: "/").map(String.init)
            var labels = ["pod": parts[1]]
            labels.merge(extra[key] ?? [:]) { _, new in new }
            var ips = [address(key, .v4)]
            if dualStack { ips.append(address(key, .v6)) }
            return Pod(
                namespace: parts[0], name: parts[1], labels: labels, nodeName: node,
                ports: ports[key] ?? containerPorts, ips: ips, phase: "Running")
        }
    }

    /// The namespaces with their default labels (ns=<name>), plus `extra` labels by name.
    static func namespaces(extra: [String: [String: String]] = [:]) -> [Namespace] {
        namespaceNames.map { name in
            var labels = ["ns": name]
            labels.merge(extra[name] ?? [:]) { _, new in new }
            return Namespace(name: name, labels: labels)
        }
    }

    /// A NetworkPolicy document: `spec` is the YAML under `spec:`, unindented.
    static func policy(_ namespace: String, _ name: String, _ spec: String) -> String {
        let body = spec.split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : "  " + $0 }.joined(separator: "\n")
        return """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata:
              name: \(name)
              namespace: \(namespace)
            spec:
            \(body)
            """
    }

    /// upstream `makeLargeCIDRForIP`: the /4 holding the address, in the address's family.
    static func largeCIDR(around address: IPAddress) -> String {
        CIDR(address: address, prefix: 4).description
    }

    /// The host block of an address (/32 or /128).
    static func hostCIDR(_ address: IPAddress) -> String { "\(address)/\(address.family.bitWidth)" }
}

/// One state of a case: its policies and label changes, applied and then checked.
struct ModelStep: Sendable {
    /// What this step does ("create", "update policy", "label y ns2=updated").
    var title: String
    /// Policy documents in force.
    var policies: [String]
    /// Labels added to pods, by key ("x/b").
    var podLabels: [String: [String: String]] = [:]
    /// Labels added to namespaces, by name.
    var namespaceLabels: [String: [String: String]] = [:]

    /// The whole cluster in this state.
    func manifests(dualStack: Bool) -> ClusterManifests {
        ClusterManifests(
            namespaces: UpstreamModel.namespaces(extra: namespaceLabels),
            pods: UpstreamModel.pods(dualStack: dualStack, extra: podLabels),
            policies: policies)
    }
}

/// One upstream test: a title and the states it goes through.
struct ModelCase: Sendable, CustomStringConvertible {
    /// Where the case comes from.
    enum Origin: String, Sendable {
        /// "NetworkPolicy between server and client" (TCP).
        case upstream = "upstream"
        /// "NetworkPolicy between server and client using UDP".
        case upstreamUDP = "upstream UDP"
        /// "NetworkPolicy between server and client using SCTP" (TCP and UDP checked; SCTP not probed).
        case upstreamSCTP = "upstream SCTP"
        /// Not in the current upstream file; written in its style.
        case picket = "picket"
    }

    /// The upstream test's title.
    var name: String
    var origin: Origin = .upstream
    /// The states, applied one after the other on the same cluster.
    var steps: [ModelStep]

    var description: String { origin == .upstream ? name : "[\(origin.rawValue)] \(name)" }
}

/// The cases. `family` chooses the family of the pod addresses the ipBlock cases name (upstream
/// takes the pod's primary IP).
enum UpstreamCases {
    typealias M = UpstreamModel

    /// "Creates" the policies in one step.
    static func one(_ name: String, origin: ModelCase.Origin = .upstream, _ policies: String...) -> ModelCase {
        ModelCase(name: name, origin: origin, steps: [ModelStep(title: "create", policies: policies)])
    }

    static let denyIngressX = M.policy("x", "deny-ingress", """
        podSelector: {}
        policyTypes: [Ingress]
        """)

    static let denyAllX = M.policy("x", "deny-all", """
        podSelector: {}
        policyTypes: [Ingress, Egress]
        """)

    /// Ingress to x/a from namespace y on the given ports list (YAML, under `ports:`).
    static func xaFromY(_ name: String, ports: String) -> String {
        M.policy("x", name, """
            podSelector:
              matchLabels:
                pod: a
            ingress:
            - from:
              - namespaceSelector:
                  matchLabels:
                    kubernetes.io/metadata.name: "y"
              ports:
            \(ports)
            policyTypes: [Ingress]
            """)
    }

    /// Egress from x/a only to y/a (namespace and pod selector in one peer).
    static let xaToYa = M.policy("x", "allow-to-ns-y-pod-a", """
        podSelector:
          matchLabels:
            pod: a
        egress:
        - to:
          - namespaceSelector:
              matchLabels:
                kubernetes.io/metadata.name: "y"
            podSelector:
              matchLabels:
                pod: a
        policyTypes: [Egress]
        """)

    /// x/a may go out to the /4 around x/b except x/b itself (upstream's except tests).
    static func exceptPolicy(_ family: IPAddress.Family) -> String {
        let b = M.address("x/b", family)
        return M.policy("x", "allow-client-a-via-cidr-egress-rule", """
            podSelector:
              matchLabels:
                pod: a
            egress:
            - to:
              - ipBlock:
                  cidr: \(M.largeCIDR(around: b))
                  except:
                  - \(M.hostCIDR(b))
            policyTypes: [Egress]
            """)
    }

    /// The upstream cases, in the upstream file's order, then the UDP and SCTP contexts, then
    /// Picket's additions.
    static func all(family: IPAddress.Family = .v4) -> [ModelCase] {
        [
            one("should support a 'default-deny-ingress' policy", denyIngressX),
            one("should support a 'default-deny-all' policy", denyAllX),
            one("should enforce policy to allow traffic from pods within server namespace based on PodSelector",
                M.policy("x", "x-a-allows-x-b", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - podSelector:
                          matchLabels:
                            pod: b
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy to allow ingress traffic for a target",
                M.policy("x", "deny-all", """
                    podSelector: {}
                    policyTypes: [Ingress]
                    """),
                M.policy("x", "allow-all-to-a", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - podSelector: {}
                        namespaceSelector: {}
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy to allow ingress traffic from pods in all namespaces",
                M.policy("x", "allow-from-another-ns", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchLabels: {}
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
                M.policy("x", "allow-client-a-via-ns-selector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchLabels:
                            kubernetes.io/metadata.name: "y"
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy based on PodSelector with MatchExpressions",
                M.policy("x", "x-a-allows-x-b", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - podSelector:
                          matchExpressions:
                          - {key: pod, operator: In, values: [b]}
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy based on NamespaceSelector with MatchExpressions",
                M.policy("x", "allow-ns-y-match-selector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchExpressions:
                          - {key: kubernetes.io/metadata.name, operator: In, values: ["y"]}
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy based on PodSelector or NamespaceSelector",
                M.policy("x", "allow-ns-y-match-selector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchExpressions:
                          - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}
                      - podSelector:
                          matchLabels:
                            pod: b
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy based on PodSelector and NamespaceSelector",
                M.policy("x", "allow-ns-y-podselector-and-nsselector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchExpressions:
                          - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}
                        podSelector:
                          matchLabels:
                            pod: b
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
                M.policy("x", "allow-ns-y-z-pod-b-c", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchExpressions:
                          - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["x"]}
                        podSelector:
                          matchExpressions:
                          - {key: pod, operator: In, values: [b, c]}
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy based on any PodSelectors",
                M.policy("x", "allow-ns-x-pod-b-c", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - podSelector:
                          matchLabels:
                            pod: b
                      - podSelector:
                          matchLabels:
                            pod: c
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
                M.policy("x", "allow-ns-y-pod-a-via-namespace-pod-selector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchLabels:
                            kubernetes.io/metadata.name: "y"
                        podSelector:
                          matchLabels:
                            pod: a
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy based on Ports",
                xaFromY("allow-client-a-via-ns-selector", ports: """
                      - port: 81
                        protocol: TCP
                    """)),
            ModelCase(name: "should enforce multiple, stacked policies with overlapping podSelectors", steps: [
                ModelStep(title: "allow 81/TCP from y", policies: [
                    xaFromY("allow-client-a-via-ns-selector", ports: """
                          - port: 81
                            protocol: TCP
                        """),
                ]),
                ModelStep(title: "add a policy allowing 80/TCP from y", policies: [
                    xaFromY("allow-client-a-via-ns-selector", ports: """
                          - port: 81
                            protocol: TCP
                        """),
                    xaFromY("allow-client-a-via-ns-selector-80", ports: """
                          - port: 80
                            protocol: TCP
                        """),
                ]),
            ]),
            one("should support allow-all policy",
                M.policy("x", "allow-all", """
                    podSelector: {}
                    ingress:
                    - {}
                    policyTypes: [Ingress]
                    """)),
            one("should allow ingress access on one named port",
                M.policy("x", "allow-all", """
                    podSelector: {}
                    ingress:
                    - ports:
                      - port: serve-81-tcp
                    policyTypes: [Ingress]
                    """)),
            one("should allow ingress access from namespace on one named port",
                xaFromY("allow-client-a-via-ns-selector-80", ports: """
                      - port: serve-80-tcp
                        protocol: TCP
                    """)),
            one("should allow egress access on one named port",
                M.policy("x", "allow-egress", """
                    podSelector: {}
                    egress:
                    - ports:
                      - port: serve-80-tcp
                    policyTypes: [Egress]
                    """)),
            ModelCase(name: "should enforce updated policy", steps: [
                ModelStep(title: "allow all", policies: [
                    M.policy("x", "allow-all-mutate-to-deny-all", """
                        podSelector: {}
                        ingress:
                        - {}
                        policyTypes: [Ingress]
                        """),
                ]),
                ModelStep(title: "update the policy to deny all", policies: [
                    M.policy("x", "allow-all-mutate-to-deny-all", """
                        podSelector: {}
                        ingress: []
                        policyTypes: [Ingress]
                        """),
                ]),
            ]),
            {
                let policy = M.policy("x", "allow-client-a-via-ns-selector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchLabels:
                            ns2: updated
                    policyTypes: [Ingress]
                    """)
                return ModelCase(name: "should allow ingress access from updated namespace", steps: [
                    ModelStep(title: "create", policies: [policy]),
                    ModelStep(title: "label namespace y ns2=updated", policies: [policy], namespaceLabels: ["y": ["ns2": "updated"]]),
                ])
            }(),
            {
                let policy = M.policy("x", "allow-client-a-via-pod-selector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - podSelector:
                          matchLabels:
                            pod: b
                            pod2: updated
                    policyTypes: [Ingress]
                    """)
                return ModelCase(name: "should allow ingress access from updated pod", steps: [
                    ModelStep(title: "create", policies: [policy]),
                    ModelStep(title: "label pod x/b pod2=updated", policies: [policy], podLabels: ["x/b": ["pod2": "updated"]]),
                ])
            }(),
            one("should deny ingress from pods on other namespaces",
                M.policy("x", "deny-empty-policy", """
                    podSelector: {}
                    ingress:
                    - from:
                      - podSelector:
                          matchLabels: {}
                    policyTypes: [Ingress]
                    """)),
            {
                let policy = M.policy("x", "deny-ingress-via-label-selector", """
                    podSelector:
                      matchLabels:
                        target: isolated
                    policyTypes: [Ingress]
                    """)
                return ModelCase(name: "should deny ingress access to updated pod", steps: [
                    ModelStep(title: "create", policies: [policy]),
                    ModelStep(title: "label pod x/a target=isolated", policies: [policy], podLabels: ["x/a": ["target": "isolated"]]),
                ])
            }(),
            one("should deny egress from pods based on PodSelector",
                M.policy("x", "deny-egress-pod-a", """
                    podSelector:
                      matchLabels:
                        pod: a
                    policyTypes: [Egress]
                    """)),
            one("should deny egress from all pods in a namespace",
                M.policy("x", "deny-egress-ns-x", """
                    podSelector: {}
                    policyTypes: [Egress]
                    """)),
            one("should work with Ingress, Egress specified together",
                M.policy("x", "allow-client-a-via-pod-selector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - podSelector:
                          matchLabels:
                            pod: b
                    egress:
                    - ports:
                      - port: 80
                    policyTypes: [Egress, Ingress]
                    """)),
            {
                func ingressFromXa(_ name: String, _ pod: String) -> String {
                    M.policy("y", name, """
                        podSelector:
                          matchLabels:
                            pod: \(pod)
                        ingress:
                        - from:
                          - namespaceSelector:
                              matchLabels:
                                kubernetes.io/metadata.name: "x"
                            podSelector:
                              matchLabels:
                                pod: a
                        policyTypes: [Ingress]
                        """)
                }
                return one("should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
                           xaToYa, ingressFromXa("allow-from-xa-on-ya-match-selector", "a"), ingressFromXa("allow-from-xa-on-yb-match-selector", "b"))
            }(),
            one("should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector", xaToYa),
            one("should enforce ingress policy allowing any port traffic to a server on a specific protocol",
                M.policy("x", "allow-ingress-by-proto", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - ports:
                      - protocol: TCP
                    policyTypes: [Ingress]
                    """)),
            {
                let port80 = M.policy("x", "allow-ingress-port-80", """
                    podSelector: {}
                    ingress:
                    - ports:
                      - port: 80
                    policyTypes: [Ingress]
                    """)
                let all = M.policy("x", "allow-ingress", """
                    podSelector: {}
                    ingress:
                    - {}
                    policyTypes: [Ingress]
                    """)
                return ModelCase(name: "should enforce multiple ingress policies with ingress allow-all policy taking precedence", steps: [
                    ModelStep(title: "allow only port 80", policies: [port80]),
                    ModelStep(title: "add an allow-all ingress policy", policies: [port80, all]),
                ])
            }(),
            {
                let port80 = M.policy("x", "allow-egress-port-80", """
                    podSelector: {}
                    egress:
                    - ports:
                      - port: 80
                    policyTypes: [Egress]
                    """)
                let all = M.policy("x", "allow-egress", """
                    podSelector: {}
                    egress:
                    - {}
                    policyTypes: [Egress]
                    """)
                return ModelCase(name: "should enforce multiple egress policies with egress allow-all policy taking precedence", steps: [
                    ModelStep(title: "allow only port 80", policies: [port80]),
                    ModelStep(title: "add an allow-all egress policy", policies: [port80, all]),
                ])
            }(),
            ModelCase(name: "should stop enforcing policies after they are deleted", steps: [
                ModelStep(title: "deny all in and out of x", policies: [denyAllX]),
                ModelStep(title: "delete every policy", policies: []),
            ]),
            one("should allow egress access to server in CIDR block",
                M.policy("x", "allow-client-a-via-cidr-egress-rule", """
                    podSelector:
                      matchLabels:
                        pod: a
                    egress:
                    - to:
                      - ipBlock:
                          cidr: \(M.hostCIDR(M.address("y/b", family)))
                    policyTypes: [Egress]
                    """)),
            one("should enforce except clause while egress access to server in CIDR block", exceptPolicy(family)),
            ModelCase(name: "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed", steps: [
                ModelStep(title: "allow the /4 around x/b except x/b", policies: [exceptPolicy(family)]),
                ModelStep(title: "update the policy to allow x/b's address only", policies: [
                    M.policy("x", "allow-client-a-via-cidr-egress-rule", """
                        podSelector:
                          matchLabels:
                            pod: a
                        egress:
                        - to:
                          - ipBlock:
                              cidr: \(M.hostCIDR(M.address("x/b", family)))
                        policyTypes: [Egress]
                        """),
                ]),
            ]),
            {
                let egress = M.policy("x", "allow-egress-for-target", """
                    podSelector:
                      matchLabels:
                        pod: a
                    egress:
                    - {}
                    policyTypes: [Egress]
                    """)
                let denyIngress = M.policy("x", "deny-ingress-via-label-selector", """
                    podSelector:
                      matchLabels:
                        pod: a
                    policyTypes: [Ingress]
                    """)
                return ModelCase(
                    name: "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
                    steps: [
                        ModelStep(title: "allow all egress of x/a", policies: [egress]),
                        ModelStep(title: "add a policy denying ingress to x/a", policies: [egress, denyIngress]),
                    ])
            }(),
            one("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
                denyIngressX,
                M.policy("x", "allow-only-sctp-ingress-on-port-81", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - ports:
                      - port: 81
                        protocol: SCTP
                    policyTypes: [Ingress]
                    """)),
            one("should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
                M.policy("x", "allow-only-sctp-ingress-on-port-80", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - ports:
                      - port: 80
                        protocol: SCTP
                    policyTypes: [Ingress]
                    """)),
            one("should not allow access by TCP when a policy specifies only UDP",
                M.policy("x", "allow-only-udp-ingress-on-port-81", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - ports:
                      - port: 81
                        protocol: UDP
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
                M.policy("x", "allow-client-a-via-ns-selector-for-immutable-ns-label", """
                    podSelector:
                      matchLabels:
                        pod: a
                    ingress:
                    - from:
                      - namespaceSelector:
                          matchLabels:
                            kubernetes.io/metadata.name: "y"
                    policyTypes: [Ingress]
                    """)),
            one("should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
                M.policy("x", "allow-ns-y-match-selector-for-immutable-ns-label", """
                    podSelector:
                      matchLabels:
                        pod: a
                    egress:
                    - to:
                      - namespaceSelector:
                          matchExpressions:
                          - {key: kubernetes.io/metadata.name, operator: NotIn, values: ["y"]}
                    policyTypes: [Egress]
                    """)),
            one("should enforce policy based on Ports", origin: .upstreamUDP,
                xaFromY("allow-ingress-on-port-81-ns-x", ports: """
                      - port: 81
                        protocol: UDP
                    """)),
            one("should enforce policy based on Ports", origin: .upstreamSCTP,
                xaFromY("allow-ingress-on-port-81-ns-x", ports: """
                      - port: 81
                        protocol: SCTP
                    """)),
            one("should support allow-all egress policy", origin: .picket,
                M.policy("x", "allow-all-egress", """
                    podSelector: {}
                    egress:
                    - {}
                    policyTypes: [Egress]
                    """)),
            ModelCase(name: "should enforce policy based on Ports, endPort", origin: .picket, steps: [
                ModelStep(title: "allow 80-81/TCP from y", policies: [
                    xaFromY("allow-port-range", ports: """
                          - port: 80
                            endPort: 81
                            protocol: TCP
                        """),
                ]),
                ModelStep(title: "update to 81-90/UDP and 1-80/TCP from y", policies: [
                    xaFromY("allow-port-range", ports: """
                          - port: 81
                            endPort: 90
                            protocol: UDP
                          - port: 1
                            endPort: 80
                        """),
                ]),
            ]),
        ]
    }

    /// The cases run over IPv4 and IPv6 in a dual-stack cluster (ipBlocks from the IPv6 addresses).
    static func dualStack() -> [ModelCase] {
        let names: Set<String> = [
            "should support a 'default-deny-ingress' policy",
            "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
            "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
        ]
        let bug = ModelCase(
            name: "should allow egress to a named port at an IPv4 ipBlock over IPv4 only", origin: .picket,
            steps: [ModelStep(title: "create", policies: [
                M.policy("x", "named-port-to-ipv4-block", """
                    podSelector:
                      matchLabels:
                        pod: a
                    egress:
                    - to:
                      - ipBlock:
                          cidr: 10.244.0.0/16
                      ports:
                      - port: serve-80-tcp
                    policyTypes: [Egress]
                    """),
            ])])
        return all(family: .v6).filter { $0.origin == .upstream && names.contains($0.name) } + [bug]
    }
}
