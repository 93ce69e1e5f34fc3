import KubeModel
import Testing

@Suite struct ManifestTests {
    @Test("multi-document YAML, Lists and typed Lists without item kinds")
    func shapes() {
        let yaml = """
            apiVersion: v1
            kind: Namespace
            metadata: {name: shop, labels: {team: a}}
            ---
            apiVersion: v1
            kind: PodList
            items:
            - metadata: {name: web-1, namespace: shop, labels: {app: web}}
              spec: {nodeName: node-a, containers: [{name: c, ports: [{name: http, containerPort: 8080}, {containerPort: 53, protocol: UDP}]}]}
              status: {phase: Running, podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: "fd00::5"}]}
            ---
            apiVersion: v1
            kind: List
            items:
            - apiVersion: networking.k8s.io/v1
              kind: NetworkPolicy
              metadata: {name: deny, namespace: shop}
              spec: {podSelector: {}}
            - apiVersion: v1
              kind: Service
              metadata: {name: web, namespace: shop}
            """
        let set = ManifestDecoder.decode(yaml, source: "in.yaml")
        #expect(set.namespaces.map(\.name) == ["shop"])
        #expect(set.namespaces.first?.labels == ["team": "a", Namespace.nameLabel: "shop"])
        let pod = set.pods.first
        #expect(pod?.key == ObjectKey(namespace: "shop", name: "web-1"))
        #expect(pod?.ips.map(\.description) == ["10.244.1.5", "fd00::5"])
        #expect(pod?.ports == [
            ContainerPort(name: "http", number: 8080, proto: .tcp, field: "spec.containers[0].ports[0]"),
            ContainerPort(name: nil, number: 53, proto: .udp, field: "spec.containers[0].ports[1]"),
        ])
        #expect(pod?.isPolicyEndpoint == true)
        #expect(set.policies.map(\.key.description) == ["shop/deny"])
        #expect(set.policies.first?.isolates == [.ingress])
        #expect(!set.hasErrors)
        #expect(set.issues.map(\.description) == ["in.yaml: Service shop/web: skipped: Picket does not read this kind"])
    }

    @Test("JSON Lists decode like YAML")
    func json() {
        let json = """
            {"apiVersion": "v1", "kind": "List", "items": [
              {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "x"},
               "spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"podIP": "172.18.0.2"}}
            ]}
            """
        let set = ManifestDecoder.decode(json, source: "in.json")
        #expect(set.pods.count == 1)
        #expect(set.pods.first?.isPolicyEndpoint == false)
        #expect(set.issues.isEmpty)
    }

    @Test("undecodable objects and unparsable text are errors naming file, object and field")
    func errors() {
        let bad = ManifestDecoder.decode("""
            apiVersion: v1
            kind: Pod
            metadata: {name: p, namespace: x}
            status: {podIP: 10.0.0.300}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {namespace: x}
            """, source: "f.yaml")
        // The pod is kept (for isolation, on no address here) and reported; it is never a peer.
        #expect(bad.pods.map(\.key.name) == ["p"])
        #expect(bad.pods.first?.ips == [])
        #expect(bad.issues.map(\.description) == [
            "f.yaml: Pod x/p: status.podIP: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "f.yaml: Pod (document 2, no metadata.name): metadata.name: is required but missing",
        ])
        let broken = ManifestDecoder.decode("kind: Pod\nmetadata: {name: [\n", source: "g.yaml")
        #expect(broken.hasErrors)
        #expect(broken.issues.first?.source == "g.yaml")
    }

    @Test("documents before a syntax error are still read")
    func partial() {
        let set = ManifestDecoder.decode("""
            apiVersion: v1
            kind: Namespace
            metadata: {name: ok}
            ---
            kind: Namespace
            metadata: {name: [
            """, source: "h.yaml")
        #expect(set.namespaces.map(\.name) == ["ok"])
        #expect(set.hasErrors)
    }

    @Test("invalid policy fields are reported with their path and the policy fails closed")
    func invalidPolicy() {
        let set = ManifestDecoder.decode("""
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: p, namespace: x}
            spec:
              podSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}
              policyTypes: [Egress]
              egress:
              - ports: [{port: http, endPort: 90}]
              - to: [{ipBlock: {cidr: 10.0.0.0/8}}]
            """, source: "p.yaml")
        #expect(set.issues.map(\.description) == [
            "p.yaml: NetworkPolicy x/p: spec.podSelector.matchExpressions[0].operator: \"Equals\" is not a valid operator (In, NotIn, Exists, DoesNotExist)",
            "p.yaml: NetworkPolicy x/p: spec.egress[0].ports[0].endPort: may not be set when port is a named port (\"http\")",
        ])
        let policy = set.policies.first
        #expect(policy?.podSelector == .everything)
        #expect(policy?.isolates == [.egress])
        #expect(policy?.egress.map(\.index) == [1])
    }

    @Test("policyTypes defaulting follows the API")
    func defaulting() {
        func isolates(_ spec: NetworkPolicy.Spec) -> Set<Direction> {
            Policy(validating: NetworkPolicy(namespace: "x", name: "p", spec: spec)).isolates
        }
        #expect(isolates(.init()) == [.ingress])
        #expect(isolates(.init(egress: [])) == [.ingress])
        #expect(isolates(.init(egress: [.init()])) == [.ingress, .egress])
        #expect(isolates(.init(policyTypes: ["Egress"], ingress: [.init()])) == [.egress])
        #expect(isolates(.init(policyTypes: ["Ingress", "Bogus"])) == [.ingress, .egress])
    }

    @Test("namespaces without objects get their automatic label")
    func implicitNamespaces() {
        let snapshot = ClusterSnapshot(pods: [Pod(namespace: "ghost", name: "p", ips: [IPAddress("10.0.0.1")!])])
        #expect(snapshot.labels(ofNamespace: "ghost") == [Namespace.nameLabel: "ghost"])
        #expect(snapshot.namespaceNames == ["ghost"])
        #expect(Namespace(name: "n", labels: [Namespace.nameLabel: "wrong"]).labels[Namespace.nameLabel] == "n")
    }
}
