import Foundation
@testable import KubeModel
import Testing

@Suite struct JSONManifestTests {
    /// Decodes JSON text through the JSON path.
    func decode(_ json: String, source: String = "in.json") -> ManifestSet {
        ManifestDecoder.decode(json, source: source)
    }

    /// The issue lines of a set.
    func lines(_ set: ManifestSet) -> [String] { set.issues.map(\.description) }

    @Test("every fixture input decodes to the same set from JSON as from YAML", arguments: fixtureInputs())
    func fixtureParity(file: URL) throws {
        let text = try String(contentsOf: file, encoding: .utf8)
        let viaYAML = ManifestDecoder.decodeYAML(text, source: "f")
        let json: String
        if file.pathExtension == "json" {
            json = text
        } else {
            guard let converted = YAMLToJSON.stream(fromYAML: text) else {
                #expect(viaYAML.hasErrors, "YAML that does not convert must not parse either")
                return
            }
            json = converted
        }
        var bytes = json
        #expect(bytes.withUTF8 { ManifestDecoder.isJSON(UnsafeRawBufferPointer($0)) } || json.isEmpty)
        let viaJSON = ManifestDecoder.decode(json, source: "f")
        #expect(viaJSON.namespaces == viaYAML.namespaces)
        #expect(viaJSON.pods == viaYAML.pods)
        #expect(viaJSON.policies == viaYAML.policies)
        #expect(lines(viaJSON) == lines(viaYAML))
    }
}

@Suite struct JSONErrorTests {
    func decode(_ json: String) -> ManifestSet { ManifestDecoder.decode(json, source: "in.json") }
    func decode(bytes: [UInt8]) -> ManifestSet {
        bytes.withUnsafeBytes { ManifestDecoder.decode(bytes: $0, source: "in.json") }
    }
    func lines(_ set: ManifestSet) -> [String] { set.issues.map(\.description) }

    let pod = #"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "x"}"#

    @Test("truncated input is a syntax error naming the position")
    func truncated() {
        let full = pod + #", "status": {"podIP": "10.0.0.1"}}"#
        for cut in [1, 10, 30, full.utf8.count - 1] {
            let set = decode(String(full.utf8.prefix(cut))!)
            #expect(set.pods.isEmpty)
            #expect(set.issues.count == 1)
            #expect(set.issues.first?.description.hasPrefix("in.json: does not parse: invalid JSON at line 1, column ") == true)
        }
    }

    @Test("nesting beyond the bound is an error, not a stack overflow")
    func deepNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let skipped = decode(pod + #", "spec": {"x": \#(deep)}}"#)
        #expect(lines(skipped) == ["in.json: does not parse: invalid JSON at line 1, column 606: nesting deeper than 512 levels"])
        let kept = decode(String(repeating: #"{"items": "#, count: 100_000))
        #expect(kept.issues.first?.message.contains("nesting deeper than 512 levels") == true)
        let fine = decode(pod + #", "spec": {"x": \#(String(repeating: "[", count: 500) + String(repeating: "]", count: 500))}}"#)
        #expect(fine.pods.count == 1)
    }

    @Test("numbers: the grammar is checked everywhere, range where an Int is kept")
    func numbers() {
        #expect(lines(decode(pod + #", "spec": {"containers": [{"ports": [{"containerPort": 99999999999999999999999}]}]}}"#)) == [
            "in.json: Pod x/p: spec.containers[0].ports[0].containerPort: 99999999999999999999999 does not fit in Int",
        ])
        #expect(lines(decode(pod + #", "spec": {"containers": [{"ports": [{"containerPort": 80.5}]}]}}"#)) == [
            "in.json: Pod x/p: spec.containers[0].ports[0].containerPort: has the wrong type, expected Int",
        ])
        // A huge number in a skipped field is valid JSON.
        #expect(decode(pod + #", "spec": {"x": 1e99999, "y": -123456789012345678901234567890}}"#).pods.count == 1)
        for bad in ["01", "1.", "-", "1e", "+1", ".5", "0x10"] {
            #expect(decode(pod + #", "spec": {"x": \#(bad)}}"#).issues.first?.message.hasPrefix("does not parse") == true, "\(bad)")
        }
    }

    @Test("invalid UTF-8 and bad escapes are syntax errors, in kept and skipped strings")
    func strings() {
        let prefix = Array((pod + #", "spec": {"x": ""#).utf8)
        let suffix = Array(#""}}"#.utf8)
        for bad: [UInt8] in [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82], [0x01]] {
            let set = decode(bytes: prefix + bad + suffix)
            #expect(set.pods.isEmpty)
            #expect(set.issues.first?.message.hasPrefix("does not parse: invalid JSON") == true, "\(bad)")
        }
        for bad in [#"\x"#, #"\u12"#, #"\uD800"#, #"\uDC00"#, #"\uD800\u0041"#, #"\uD800x"#] {
            #expect(decode(pod + #", "spec": {"x": "\#(bad)"}}"#).pods.isEmpty, "\(bad)")
        }
        // Escapes in values and in keys (`\u006eodeName` is `nodeName`).
        let good = decode(pod + #", "spec": {"\u006eodeName": "n1"}, "status": {"phase": "a\u00e9\ud83d\ude00\n\"\\\/\u0041\u00E9€😀"}}"#)
        #expect(good.issues.isEmpty)
        #expect(good.pods.first?.nodeName == "n1")
        #expect(good.pods.first?.phase == "aé😀\n\"\\/Aé€😀")
    }

    @Test("wrong types name the object and the field, as the YAML path does")
    func wrongTypes() {
        #expect(lines(decode(pod + #", "spec": {"containers": [{"ports": [{"containerPort": 80}, {"containerPort": "81"}]}]}}"#)) == [
            "in.json: Pod x/p: spec.containers[0].ports[1].containerPort: has the wrong type, expected Int",
        ])
        #expect(lines(decode(pod + #", "spec": {"hostNetwork": "yes"}}"#)) == [
            "in.json: Pod x/p: spec.hostNetwork: has the wrong type, expected Bool",
        ])
        #expect(lines(decode(#"{"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "labels": {"a": 1}}}"#)) == [
            "in.json: Pod p: metadata.labels.a: has the wrong type, expected String",
        ])
        #expect(lines(decode(#"{"kind": "Pod", "apiVersion": "v1", "metadata": {"namespace": "x"}}"#)) == [
            "in.json: Pod (document 1, no metadata.name): metadata.name: is required but missing",
        ])
        #expect(lines(decode(pod + #", "spec": {"containers": [{"ports": [{"name": "a"}]}]}}"#)) == [
            "in.json: Pod x/p: spec.containers[0].ports[0].containerPort: is required but missing",
        ])
        // An address that does not parse is left out; the pod is kept (isolated, never a peer).
        let badIP = decode(pod + #", "status": {"podIP": "10.0.0.300"}}"#)
        #expect(lines(badIP) == [
            "in.json: Pod x/p: status.podIP: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ])
        #expect(badIP.pods.first?.ips == [])
        #expect(lines(decode(#"{"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "np", "namespace": "x"}, "spec": {"ingress": [{"from": [{"ipBlock": {"except": []}}]}]}}"#)) == [
            "in.json: NetworkPolicy x/np: spec.ingress[0].from[0].ipBlock.cidr: is required but missing",
        ])
        // The object fails alone; the next one is read.
        let two = decode(#"[1] {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "n"}}"#)
        #expect(lines(two) == ["in.json: document 1: is not an object (a mapping)"])
        #expect(two.namespaces.map(\.name) == ["n"])
    }

    @Test("duplicate keys: later scalars and arrays replace, objects merge (Go's encoding/json)")
    func duplicateKeys() {
        let set = decode(#"""
            {"kind": "Pod", "apiVersion": "v1",
             "metadata": {"name": "a", "namespace": "x", "labels": {"k": "1", "j": "1"}},
             "metadata": {"name": "b", "labels": {"k": "2"}},
             "spec": {"containers": [{"ports": [{"containerPort": 1}]}], "containers": [{"ports": [{"containerPort": 2}]}]}}
            """#)
        #expect(set.issues.isEmpty)
        #expect(set.pods.first?.key == ObjectKey(namespace: "x", name: "b"))
        #expect(set.pods.first?.labels == ["k": "2", "j": "1"])
        #expect(set.pods.first?.ports.map(\.number) == [2])
    }

    @Test("kind after the fields, kindless items of typed Lists, Lists with items first, streams")
    func shapes() {
        let late = decode(#"{"metadata": {"name": "p", "namespace": "x"}, "status": {"podIP": "10.0.0.1"}, "spec": {"nodeName": "n"}, "apiVersion": "v1", "kind": "Pod"}"#)
        #expect(late.pods.first?.nodeName == "n")
        #expect(late.pods.first?.ips.map(\.description) == ["10.0.0.1"])
        let apiList = decode(#"{"apiVersion": "v1", "items": [{"metadata": {"name": "p", "namespace": "x"}, "spec": {"nodeName": "n"}}, null], "kind": "PodList", "metadata": {}}"#)
        #expect(apiList.issues.isEmpty)
        #expect(apiList.pods.map(\.nodeName) == ["n"])
        let kubectl = decode(#"{"apiVersion": "v1", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}], "kind": "List"}"#)
        #expect(kubectl.namespaces.map(\.name) == ["n"])
        let notAList = decode(#"{"apiVersion": "v1", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}], "kind": "Secret", "metadata": {"name": "s"}}"#)
        #expect(notAList.namespaces.isEmpty)
        #expect(lines(notAList) == ["in.json: Secret s: skipped: Picket does not read this kind"])
        let stream = decode(#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}} null"#)
        #expect(stream.namespaces.map(\.name) == ["a", "b"])
        let badItems = decode(#"{"kind": "List", "items": {}}"#)
        #expect(lines(badItems) == ["in.json: List (document 1, no metadata.name): items: is not a list"])
    }

    @Test("a .json file that is not JSON reports the JSON error; YAML still goes to Yams")
    func routing() {
        #expect(lines(decode(#"{"kind": "Namespace", metadata: {}}"#)) == [
            "in.json: does not parse: invalid JSON at line 1, column 23: unexpected 'm', expected a string key",
        ])
        #expect(decode("kind: Namespace\napiVersion: v1\nmetadata: {name: y}\n").namespaces.map(\.name) == ["y"])
        #expect(lines(decode(bytes: [0x6B, 0x3A, 0xFF])) == ["in.json: is not UTF-8 text"])
    }
}
