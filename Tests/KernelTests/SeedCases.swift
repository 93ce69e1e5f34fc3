// The cluster and the policies of the seed document's test table ("Using Network Policy for
// Network Access Control", annex "Test Cases"), with expectations written by hand from the
// document's own sentences. Nothing here asks the compiler (or an evaluator) what is allowed.

import KubeModel

/// The test cluster: namespaces nsa, nsb (label app: nsb) and nsc; two pods per namespace on
/// each node, so every namespace pair has a same-node and a cross-node pair. Pod names say
/// their node: `p-a*` on node-a, `p-b*` on node-b. In nsa, `*1` pods are `app: redis` and `*2`
/// pods `app: web` (case e whitelists only the redis pods).
enum SeedCluster {
    /// The namespaces.
    static let namespaces = [
        Namespace(name: "nsa", labels: ["team": "a"]),
        Namespace(name: "nsb", labels: ["app": "nsb", "team": "b"]),
        Namespace(name: "nsc", labels: ["team": "c"]),
    ]

    /// (namespace, name, node, IPv4, labels). IPv6, when dual-stack, is the IPv4 with
    /// `10.244.N.X` written `fd00:10:244:N::X`.
    private static let table: [(String, String, String, String, [String: String])] = [
        ("nsa", "p-a1", "node-a", "10.244.1.10", ["app": "redis"]),
        ("nsa", "p-a2", "node-a", "10.244.1.11", ["app": "web"]),
        ("nsa", "p-b1", "node-b", "10.244.2.10", ["app": "redis"]),
        ("nsa", "p-b2", "node-b", "10.244.2.11", ["app": "web"]),
        ("nsb", "p-a1", "node-a", "10.244.1.20", ["app": "client"]),
        ("nsb", "p-a2", "node-a", "10.244.1.21", ["app": "client"]),
        ("nsb", "p-b1", "node-b", "10.244.2.20", ["app": "client"]),
        ("nsb", "p-b2", "node-b", "10.244.2.21", ["app": "client"]),
        ("nsc", "p-a1", "node-a", "10.244.1.30", ["app": "client"]),
        ("nsc", "p-a2", "node-a", "10.244.1.31", ["app": "client"]),
        ("nsc", "p-b1", "node-b", "10.244.2.30", ["app": "client"]),
        ("nsc", "p-b2", "node-b", "10.244.2.31", ["app": "client"]),
    ]

    /// The pods, IPv4 only or dual-stack.
    static func pods(dualStack: Bool = false) -> [Pod] {
        table.map { namespace, name, node, v4, labels in
            var ips = [IPAddress(v4)!]
            if dualStack {
                let octets = v4.split(separator: ".")
                ips.append(IPAddress("fd00:10:244:\(octets[2])::\(octets[3])")!)
            }
            return Pod(
                namespace: namespace, name: name, labels: labels, nodeName: node,
                ports: [ContainerPort(name: "http", number: 80), ContainerPort(name: "redis", number: 6379)],
                ips: ips, phase: "Running")
        }
    }
}

/// The seed document's policies, as YAML (the document's text, with apiVersion
/// networking.k8s.io/v1 and the namespace as a parameter).
enum SeedPolicies {
    /// 1. "The pods in the nsa namespace can access one another and cannot be accessed by any
    /// other pods."
    static func internalOnly(_ namespace: String) -> String {
        """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: npa
          namespace: \(namespace)
        spec:
          ingress:
          - from:
            - podSelector: {}
          podSelector: {}
          policyTypes:
          - Ingress
        """
    }

    /// 2. "The pods in nsa namespace cannot be accessed by any pods."
    static func denyAll(_ namespace: String) -> String {
        """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: npa
          namespace: \(namespace)
        spec:
          podSelector: {}
          policyTypes:
          - Ingress
        """
    }

    /// 3. "The pods in the nsa namespace can only be accessed by pods under the namespace with
    /// the tag app: nsb on the 6379/TCP port and cannot be accessed by any other pods."
    static let whitelistNsb6379 = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: npa
          namespace: nsa
        spec:
          ingress:
          - from:
            - namespaceSelector:
                matchLabels:
                  app: nsb
            ports:
            - protocol: TCP
              port: 6379
          podSelector: {}
          policyTypes:
          - Ingress
        """

    /// 4. "The pods in nsa namespace can access the 5978/TCP port of the network endpoint with
    /// CIDR of 14.215.0.0/16 but cannot access any other network endpoints."
    static let egressCIDR5978 = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: npa
          namespace: nsa
        spec:
          egress:
          - to:
            - ipBlock:
                cidr: 14.215.0.0/16
            ports:
            - protocol: TCP
              port: 5978
          podSelector: {}
          policyTypes:
          - Egress
        """

    /// 5. "The pods in default namespace can only be accessed by the network endpoint with CIDR
    /// of 14.215.0.0/16 on the 80/TCP port but not by any other network endpoints." Applied to
    /// nsc here (the test cluster has no pods in default).
    static let ingressCIDR80 = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: npd
          namespace: nsc
        spec:
          ingress:
          - from:
            - ipBlock:
                cidr: 14.215.0.0/16
            ports:
            - protocol: TCP
              port: 80
          podSelector: {}
          policyTypes:
          - Ingress
        """

    /// For test case 5 of the table: "namespace B can access the corresponding pods and port in
    /// namespace A": nsb may reach nsa's redis pods on 6379/TCP (on top of policy 1 in every
    /// namespace, which keeps namespaces apart).
    static let whitelistNsbToRedis6379 = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: allow-nsb-to-redis
          namespace: nsa
        spec:
          podSelector:
            matchLabels:
              app: redis
          ingress:
          - from:
            - namespaceSelector:
                matchLabels:
                  app: nsb
            ports:
            - protocol: TCP
              port: 6379
          policyTypes:
          - Ingress
        """
}

/// One row of the seed test table, made concrete.
struct KernelCase: Sendable, CustomStringConvertible {
    /// The table row, in the document's words.
    var title: String
    /// The policies, as YAML documents.
    var policies: [String]
    /// The ports probed.
    var ports: [ProbePort]
    /// The flows probed.
    var selection: FlowSelection = .all
    /// Whether pods are dual-stack.
    var dualStack = false
    /// The hand-written expectation: whether `flow` must get through.
    var expectAllowed: @Sendable (Flow) -> Bool

    var description: String { title }
}
