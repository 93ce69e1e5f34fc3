@testable import KubeModel
import Foundation
import PolicyCompiler
import Testing

/// Nothing from the cluster is rendered raw: whatever string reaches a name, a namespace, a
/// label or a node name (validators bypassed by building model values directly), every line of
/// the output is one Picket writes, touching only its chains and sets.
@Suite struct RestoreSafetyTests {
    /// Every byte value, alone and inside a name (bytes 0x80-0xFF both as the lossily decoded
    /// byte and as the scalar of that value), one scalar of every Unicode general category, and
    /// the injections of the issue.
    static let samples: [String] = {
        var samples: [String] = []
        for byte in 0...255 {
            let alone = byte < 0x80 ? String(UnicodeScalar(UInt8(byte))) : String(decoding: [UInt8(byte)], as: UTF8.self)
            samples.append(alone)
            samples.append("web" + alone + "-1")
            if byte >= 0x80 { samples.append("a" + String(UnicodeScalar(UInt8(byte))) + "b") }
        }
        samples += categorySamples.map { "x" + String($0) + "y" }
        samples += [
            "evil\" -j ACCEPT\n-A FORWARD -j ACCEPT\n#",
            "\"",
            "a\\\" -j ACCEPT \\",
            "x\r\n-I INPUT 1 -j ACCEPT\r\n",
            "ok\u{0}\n*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT",
            "COMMIT\n*filter\n:FORWARD DROP [0:0]",
            "x\ncreate evil hash:ip\nadd evil 1.2.3.4",
            String(repeating: "\u{202E}é\"\n", count: 200),
            String(repeating: "long-name.", count: 60),
        ]
        return samples
    }()

    /// One scalar of each Unicode general category (a surrogate cannot be a Swift scalar: its
    /// UTF-8 bytes decode to U+FFFD).
    static let categorySamples: [Unicode.Scalar] = [
        "A", "a", "\u{01C5}", "\u{02B0}", "\u{05D0}", "\u{0301}", "\u{0903}", "\u{20DD}", "\u{0663}", "\u{216B}", "\u{00B2}",
        "\u{203F}", "\u{2010}", "\u{2045}", "\u{2046}", "\u{00AB}", "\u{00BB}", "\u{00A1}", "\u{2211}", "\u{20AC}", "\u{00B4}",
        "\u{00A9}", "\u{3000}", "\u{2028}", "\u{2029}", "\u{0085}", "\u{202E}", "\u{E000}", "\u{0378}",
    ]

    @Test("the samples cover every Unicode general category but surrogates")
    func categories() {
        let covered = Set(Self.categorySamples.map { "\($0.properties.generalCategory)" })
        #expect(covered.count == 29, "\(Self.categorySamples.map { "\($0.properties.generalCategory)" })")
        #expect(!covered.contains("surrogate"))
    }

    /// A cluster where `text` is every name, namespace, label key and value, selector key and
    /// value, and node name, with one local pod selected by a policy with rules of every kind.
    static func cluster(_ text: String) -> (ClusterSnapshot, node: String) {
        let node = text
        let labels = [text: text, "app": text]
        let selector = Selector(requirements: [
            Selector.Requirement(key: text, op: .in, values: [text]),
            Selector.Requirement(key: "app", op: .notIn, values: [text + "x"]),
        ])
        let namespace = Namespace(name: text, labels: labels)
        let local = Pod(
            namespace: text, name: text, labels: labels, nodeName: node,
            ports: [ContainerPort(name: text, number: 80)], ips: [IPAddress("10.0.0.1")!, IPAddress("fd00::1")!])
        let remote = Pod(namespace: "other", name: text + "2", labels: labels, nodeName: "node-b", ips: [IPAddress("10.0.1.1")!])
        let rule = Policy.Rule(
            index: 0,
            peers: [.pods(namespaces: selector, pods: selector), .pods(namespaces: nil, pods: selector),
                    .block(cidr: CIDR("10.0.0.0/8")!, except: [CIDR("10.1.0.0/16")!])],
            ports: [Policy.Port(proto: .tcp, range: .range(80, 80)), Policy.Port(proto: .udp, range: .named(text))])
        var policies: [Policy] = []
        for (i, name) in [text, text + "-b", String(repeating: text, count: 40)].enumerated() {
            policies.append(Policy(
                key: ObjectKey(namespace: text, name: name), podSelector: i == 0 ? selector : .everything,
                isolates: [.ingress, .egress], ingress: [rule], egress: [rule], errors: []))
        }
        return (ClusterSnapshot(namespaces: [namespace], pods: [local, remote], policies: policies), node)
    }

    @Test("every byte and Unicode category, in every place a name can reach, renders only Picket's lines")
    func everyByteEveryPlace() {
        #expect(Self.samples.count > 600)
        for text in Self.samples {
            let (snapshot, node) = Self.cluster(text)
            let ruleset = compile(snapshot, node: node)
            #expect(ruleset.ipv4.chains.count > 8, "the sample must reach policy chains")
            let problems = restoreProblems(ruleset, node: node)
            #expect(problems.isEmpty, "sample \(Validation.quoted(text)): \(problems)")
        }
    }

    @Test("the structural check refuses foreign lines")
    func guardRefuses() {
        let check = RestoreGuard.standard
        let good = "*mangle\n:PICKET-MARK-FORWARD - [0:0]\n-I FORWARD 1 -m comment --comment \"x y\" -j PICKET-MARK-FORWARD\n-A PICKET-MARK-FORWARD -j DROP\nCOMMIT\n"
        #expect(check.violations(inTableRestore: good) == [])
        // In filter, where earlier layouts judged, only removals.
        #expect(check.violations(inTableRestore: "*filter\n-D OUTPUT 3\n-D FORWARD 1\n-X PICKET-OLD\nCOMMIT\n") == [])
        for bad in [
            "*filter\n-I FORWARD 1 -j PICKET-FORWARD\nCOMMIT\n",
            "*filter\n-I FORWARD 1 -j PICKET-MARK-FORWARD\nCOMMIT\n",
            "*mangle\n-I FORWARD 1 -j PICKET-FORWARD\nCOMMIT\n",
            "*mangle\n-I INPUT 1 -j PICKET-MARK-FORWARD\nCOMMIT\n",
            "*filter\n-A FORWARD -j ACCEPT\nCOMMIT\n",
            "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n",
            "*nat\n-A PICKET-X -j ACCEPT\nCOMMIT\n",
            "*filter\n-I FORWARD 1 -j ACCEPT\nCOMMIT\n",
            "*filter\n-I OUTPUT 1 -j PICKET-FORWARD\nCOMMIT\n",
            "*filter\n-I INPUT 1 -j PICKET-FORWARD\nCOMMIT\n",
            "*filter\n-D KUBE-SERVICES 1\nCOMMIT\n",
            "*filter\n-D OUTPUT 1 -j ACCEPT\nCOMMIT\n",
            "*filter\n-X FORWARD\nCOMMIT\n",
            "*filter\n-F PICKET-X\nCOMMIT\n",
            "*filter\n-A PICKET-X -m comment --comment \"open\nCOMMIT\n",
            "*filter\n-A PICKET-X -j ACCEPT -A FORWARD\nCOMMIT\n",
            "*filter\n-A PICKET-X -j CUSTOM\nCOMMIT\n",
            "*filter\n-A PICKET-X -m set --match-set kube-set src -j DROP\nCOMMIT\n",
            "*filter\n-A PICKET-X -m comment --comment \"a\r\" -j DROP\nCOMMIT\n",
            "*filter\n\nCOMMIT\n",
            "-A PICKET-X -j DROP\n",
            "*filter\n-A PICKET-X -j DROP\n",
        ] {
            #expect(!check.violations(inTableRestore: bad).isEmpty, "\(Validation.quoted(bad))")
        }
        let sets = "create picket-a-v4 hash:ip family inet hashsize 1024 maxelem 65536\nadd picket-a-v4 10.0.0.1\nadd picket-n-v4 10.0.0.0/8 nomatch\nadd picket-p-v6 fd00::1,tcp:80\ndel picket-a-v4 10.0.0.1\nswap picket-a-v4 picket-tmp-v4\ndestroy picket-tmp-v4\n"
        #expect(check.violations(inSetRestore: sets) == [])
        for bad in [
            "create kube-set hash:ip\n", "add kube-set 10.0.0.1\n", "flush picket-a\n", "add picket-a 10.0.0.1 timeout 5\n",
            "add picket-a 10.0.0.1\nadd evil 1.1.1.1\n", "create picket-a list:set\n", "add picket-a not-an-ip\n",
            "swap picket-a kube-b\n", "destroy\n", "destroy picket-a picket-b\n", "add picket-a 10.0.0.1,icmp:0\n",
        ] {
            #expect(!check.violations(inSetRestore: bad).isEmpty, "\(Validation.quoted(bad))")
        }
        // The lists extend: a mangle table with its hook, skbinfo sets with skbmark members.
        var extended = RestoreGuard.standard
        extended.tables.append("mangle")
        extended.hooks.append(.init(table: "mangle", builtin: "FORWARD", target: "PICKET-MARK"))
        extended.builtins["mangle"] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        extended.targets.insert("SET")
        extended.setOptions.insert("--map-set")
        extended.createOptions["skbinfo"] = .flag
        extended.memberOptions["skbmark"] = .mark
        let mangle = "*mangle\n:PICKET-MARK - [0:0]\n-I FORWARD 1 -j PICKET-MARK\n-A PICKET-MARK -j SET --map-set picket-m-v4 dst --map-mark\nCOMMIT\n"
        #expect(extended.violations(inTableRestore: mangle) == [])
        #expect(!check.violations(inTableRestore: mangle).isEmpty)
        #expect(extended.violations(inSetRestore: "create picket-m-v4 hash:ip family inet skbinfo\nadd picket-m-v4 10.0.0.1 skbmark 0x10/0xf0\n") == [])
    }

    @Test("restore words split as iptables-restore splits them")
    func tokenizer() {
        #expect(RestoreGuard.words("-A X -m comment --comment \"a b\" -j DROP") == ["-A", "X", "-m", "comment", "--comment", "a b", "-j", "DROP"])
        #expect(RestoreGuard.words("--comment \"a\\\"b\" x") == ["--comment", "a\"b", "x"])
        #expect(RestoreGuard.words("--comment \"\"") == ["--comment", ""])
        #expect(RestoreGuard.words("--comment \"open") == nil)
    }
}

/// What is wrong with the restore files of a ruleset: lines the guard refuses, and comment
/// words with control characters or over the kernel's 255 bytes.
func restoreProblems(_ ruleset: Ruleset, node: String) -> [String] {
    var problems: [String] = []
    let check = RestoreGuard.standard
    problems += check.violations(inSetRestore: ruleset.ipsetRestore(node: node)).map { "ipset.restore \($0)" }
    for family in IPAddress.Family.allCases {
        guard let text = ruleset.iptablesRestore(family: family, node: node) else { continue }
        problems += check.violations(inTableRestore: text).map { "iptables.restore \($0)" }
        for line in text.split(separator: "\n") where line.hasPrefix("-") {
            guard let words = RestoreGuard.words(line) else {
                problems.append("does not tokenize: \(line)")
                continue
            }
            for (i, word) in words.enumerated() where i > 0 && words[i - 1] == "--comment" {
                if word.utf8.contains(where: { $0 < 0x20 || $0 >= 0x7F }) { problems.append("comment with control bytes: \(line)") }
                if word.utf8.count > RestoreText.commentLimit { problems.append("comment over 255 bytes: \(line)") }
            }
        }
    }
    return problems
}
