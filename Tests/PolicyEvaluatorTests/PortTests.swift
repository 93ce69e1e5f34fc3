import KubeModel
import PolicyEvaluator
import Testing

/// `ports`: numbers, ranges, protocol-only entries and named ports.
@Suite struct PortTests {
    /// An ingress policy on every pod of x admitting any source on `ports`.
    private func ingressPorts(_ ports: [NetworkPolicy.Port]) -> Evaluator {
        makeEvaluator([makePolicy("x", "p") { $0.ingress = [rule(nil, ports: ports)] }])
    }

    @Test("a numeric port admits that port of that protocol (TCP when unspecified) and nothing else")
    func numericPort() {
        let e = ingressPorts([port(80)])
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 80)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 81)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.udp, 80)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.sctp, 80)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .icmp))
        let sctp = ingressPorts([port(80, "SCTP")])
        #expect(sctp.allows(outside, pod("x/b"), .port(.sctp, 80)))
        #expect(!sctp.allows(outside, pod("x/b"), .port(.tcp, 80)))
    }

    @Test("endPort makes an inclusive range")
    func endPortRange() {
        let e = ingressPorts([port(8000, end: 8080)])
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 7999)))
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 8000)))
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 8042)))
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 8080)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 8081)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.udp, 8000)))
    }

    @Test("a protocol without a port admits every port of that protocol only")
    func protocolOnly() {
        let e = ingressPorts([NetworkPolicy.Port(protocol: "UDP")])
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.udp, 1)))
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.udp, 65535)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 53)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .icmp))
    }

    @Test("several port entries are ORed")
    func severalPorts() {
        let e = ingressPorts([port(53, "UDP"), port(443)])
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.udp, 53)))
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 443)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 53)))
        #expect(!e.allows(pod("y/a"), pod("x/a"), .port(.udp, 443)))
    }

    @Test("a named ingress port resolves on each destination pod to its own number")
    func namedPortPerPod() {
        let e = ingressPorts([port("http")])
        #expect(e.allows(pod("y/b"), pod("x/a"), .port(.tcp, 8080)))
        #expect(!e.allows(pod("y/b"), pod("x/a"), .port(.tcp, 9090)))
        #expect(e.allows(pod("y/b"), pod("x/b"), .port(.tcp, 9090)))
        #expect(!e.allows(pod("y/b"), pod("x/b"), .port(.tcp, 8080)))
    }

    @Test("a named port whose protocol differs from the container port's admits nothing")
    func namedPortProtocolMismatch() {
        // x/b declares dns as UDP 53.
        let tcp = ingressPorts([port("dns", "TCP")])
        #expect(!tcp.allows(pod("y/a"), pod("x/b"), .port(.tcp, 53)))
        #expect(!tcp.allows(pod("y/a"), pod("x/b"), .port(.udp, 53)))
        let udp = ingressPorts([port("dns", "UDP")])
        #expect(udp.allows(pod("y/a"), pod("x/b"), .port(.udp, 53)))
        #expect(!udp.allows(pod("y/a"), pod("x/b"), .port(.tcp, 53)))
        // x/a has no port named dns at all.
        #expect(!udp.allows(pod("y/a"), pod("x/a"), .port(.udp, 53)))
    }

    @Test("an egress named port with no `to` resolves on every destination pod, never on an address")
    func egressNamedPortWithoutPeers() {
        let e = makeEvaluator([makePolicy("z", "p") {
            $0.policyTypes = ["Egress"]
            $0.egress = [rule(nil, ports: [port("http")])]
        }])
        #expect(e.allows(pod("z/c"), pod("x/a"), .port(.tcp, 8080)))
        #expect(e.allows(pod("z/c"), pod("y/a"), .port(.tcp, 8080)))
        #expect(e.allows(pod("z/c"), pod("x/b"), .port(.tcp, 9090)))
        #expect(!e.allows(pod("z/c"), pod("x/b"), .port(.tcp, 8080)))
        #expect(!e.allows(pod("z/c"), pod("y/b"), .port(.tcp, 8080)))  // y/b declares no ports
        #expect(!e.allows(pod("z/c"), .address(ip("192.0.2.10")), .port(.tcp, 8080)))
    }

    @Test("ICMP passes only rules without ports")
    func icmp() {
        let e = makeEvaluator([makePolicy("x", "p") {
            $0.ingress = [rule([.init(namespaceSelector: labels(["team": "y"]))], ports: [NetworkPolicy.Port(protocol: "TCP")]),
                          rule([.init(namespaceSelector: labels(["team": "z"]))])]
        }])
        #expect(!e.allows(pod("y/a"), pod("x/a"), .icmp))
        #expect(e.allows(pod("y/a"), pod("x/a"), .port(.tcp, 1234)))
        #expect(e.allows(pod("z/c"), pod("x/a"), .icmp))
    }
}
