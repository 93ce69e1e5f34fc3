@testable import KubeModel
import Testing

/// The API server's rules, with its messages, over model values.
@Suite struct ValidationTests {
    @Test("names: labels and subdomains as apimachinery's IsDNS1123Label/IsDNS1123Subdomain")
    func names() {
        for valid in ["a", "0", "my-name", "123-abc", String(repeating: "a", count: 63)] { #expect(Validation.dns1123Label(valid) == [], "\(valid)") }
        for invalid in ["", "-a", "a-", "A", "a_b", "a.b", "a b", "é", String(repeating: "a", count: 64)] {
            #expect(!Validation.dns1123Label(invalid).isEmpty, "\(invalid)")
        }
        #expect(Validation.dns1123Label("a.b") == ["must not contain dots"])
        #expect(Validation.dns1123Label("A") == [
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ])
        for valid in ["a", "example.com", "a-b.c-d", "0.0"] { #expect(Validation.dns1123Subdomain(valid) == [], "\(valid)") }
        for invalid in ["", ".a", "a.", "a..b", "a.-b", "a-.b", "A.b", String(repeating: "a.", count: 127) + "a"] {
            #expect(!Validation.dns1123Subdomain(invalid).isEmpty, "\(invalid)")
        }
    }

    @Test("label keys and values as IsQualifiedName/IsValidLabelValue; port names as IsValidPortName")
    func labelsAndPorts() {
        for valid in ["app", "App.Name_1", "example.com/app", "kubernetes.io/metadata.name"] { #expect(Validation.labelKey(valid) == [], "\(valid)") }
        #expect(Validation.labelKey("/app") == ["prefix part must be non-empty"])
        #expect(Validation.labelKey("a/b/c").first?.hasPrefix("a valid label key must consist of") == true)
        #expect(Validation.labelKey("example.com/").first == "name part must be non-empty")
        #expect(Validation.labelKey("Example.com/app").first?.hasPrefix("prefix part a lowercase RFC 1123 subdomain") == true)
        #expect(Validation.labelValue("") == [])
        #expect(Validation.labelValue("my_value") == [])
        #expect(!Validation.labelValue("-x").isEmpty)
        #expect(Validation.portName("http") == [])
        #expect(Validation.portName("web-80") == [])
        #expect(Validation.portName("80") == ["must contain at least one letter (a-z)"])
        #expect(Validation.portName("a--b") == ["must not contain consecutive hyphens"])
        #expect(Validation.portName("-ab") == ["must not begin or end with a hyphen"])
        #expect(Validation.portName("abcdefghijklmnop") == ["must be no more than 15 characters"])
        #expect(Validation.portNumber(0) == ["must be between 1 and 65535, inclusive"])
    }

    @Test("invalid values are quoted on one line, escaped and shortened")
    func quoting() {
        #expect(Validation.quoted("a\"b\\c\n\u{0}\u{202E}é") == "\"a\\\"b\\\\c\\n\\x00\\u{202e}\\xe9\"")
        #expect(Validation.quoted(String(repeating: "a", count: 100)) == "\"" + String(repeating: "a", count: 80) + "...\"")
    }

    @Test("isValid agrees with errors(of:) for pods and namespaces")
    func fastPathAgrees() {
        let strings = ["a", "web", "A", "a.b", "", "a b", "-x", "x/y", "example.com/x", "/x", "a/b/c", "é", "\n", String(repeating: "a", count: 64),
                       "my_value", "a..b", "node-a.example.com"]
        for s in strings {
            for t in strings.prefix(8) {
                let namespace = Namespace(name: s, labels: [t: s])
                #expect(Validation.isValid(namespace) == Validation.errors(of: namespace).isEmpty, "\(s) \(t)")
                let pod = Pod(namespace: t, name: s, labels: [s: t], nodeName: t, ports: [ContainerPort(name: s, number: 80)])
                #expect(Validation.isValid(pod) == Validation.errors(of: pod).isEmpty, "\(s) \(t)")
            }
        }
    }

    @Test("an invalid pod is selected for isolation but never a peer; an invalid namespace never matches a namespaceSelector")
    func invalidObjectsCount() {
        let valid = Pod(namespace: "shop", name: "a", labels: ["app": "web"], ips: [IPAddress("10.0.0.1")!])
        let invalid = Pod(namespace: "shop", name: "B", labels: ["app": "web"], ips: [IPAddress("10.0.0.2")!])
        let badNamespace = Namespace(name: "other", labels: ["team": "-x"])
        let inBadNamespace = Pod(namespace: "other", name: "c", labels: ["app": "web"], ips: [IPAddress("10.0.0.3")!])
        let snapshot = ClusterSnapshot(namespaces: [badNamespace], pods: [valid, invalid, inBadNamespace])
        #expect(snapshot.endpoints.map(\.key.name) == ["c", "B", "a"])
        #expect(snapshot.peerEligible == [false, false, true])
        let web = Selector(requirements: [.init(key: "app", op: .in, values: ["web"])])
        #expect(snapshot.endpointIndexes(matching: web, inNamespaces: nil, policyNamespace: "shop") == [2])
        #expect(snapshot.endpointIndexes(matching: web, inNamespaces: .everything, policyNamespace: "shop") == [2])
        #expect(snapshot.namespaces(matching: .everything) == ["shop"])
    }
}
