import Foundation
import KubeModel
import PolicyCompiler
import Testing

/// Golden tests: each Fixtures/<case>/ compiles to exactly its recorded files.
/// Re-record with `make golden` (PICKET_RECORD=1): recording writes the files and fails the run.
@Suite struct GoldenTests {
    static let recording = ProcessInfo.processInfo.environment["PICKET_RECORD"] == "1"

    @Test("there are enough golden cases")
    func caseCount() {
        #expect(GoldenCase.all().count >= 30)
    }

    @Test("compiled output equals the golden files", arguments: GoldenCase.all())
    func golden(_ fixture: GoldenCase) throws {
        let files = renderedFiles(fixture.load(), node: fixture.node, options: fixture.options)
        for name in goldenNames {
            let url = fixture.directory.appendingPathComponent(name)
            let expected = try? String(contentsOf: url, encoding: .utf8)
            let actual = files[name]
            if GoldenTests.recording {
                if let actual {
                    try actual.write(to: url, atomically: true, encoding: .utf8)
                } else if expected != nil {
                    try FileManager.default.removeItem(at: url)
                }
                continue
            }
            guard expected != actual else { continue }
            Issue.record("""
                \(fixture.name)/\(name) differs from the golden file \(url.path)
                \(unifiedDiff(expected: expected ?? "", actual: actual ?? "", label: name))
                If the change is intended, re-record with `make golden` and review the diff.
                """)
        }
        if GoldenTests.recording {
            Issue.record("recorded \(fixture.name); run again without PICKET_RECORD to check")
        }
    }

    @Test("shuffled input yields the same bytes", arguments: GoldenCase.all())
    func deterministic(_ fixture: GoldenCase) {
        let set = fixture.load()
        let reference = renderedFiles(set, node: fixture.node, options: fixture.options)
        for seed: UInt64 in [1, 2, 3] {
            var rng = SplitMix64(state: seed)
            var shuffled = set
            shuffled.namespaces.shuffle(using: &rng)
            shuffled.pods.shuffle(using: &rng)
            shuffled.policies.shuffle(using: &rng)
            #expect(renderedFiles(shuffled, node: fixture.node, options: fixture.options) == reference, "seed \(seed)")
        }
    }

    @Test("every jump target and set exists, names fit the kernel's limits", arguments: GoldenCase.all())
    func consistent(_ fixture: GoldenCase) {
        let ruleset = compile(fixture.load().snapshot, node: fixture.node, options: fixture.options)
        #expect(checkConsistency(ruleset) == [])
    }

    @Test("every line of the output is one of Picket's (the executor's restore guard)", arguments: GoldenCase.all())
    func structural(_ fixture: GoldenCase) {
        let ruleset = compile(fixture.load().snapshot, node: fixture.node, options: fixture.options)
        #expect(restoreProblems(ruleset, node: fixture.node) == [])
    }

    @Test("the golden output loads into a real kernel", kernelOnly, arguments: GoldenCase.all())
    func loadsInKernel(_ fixture: GoldenCase) throws {
        let files = renderedFiles(fixture.load(), node: fixture.node, options: fixture.options)
        guard files["ipset.restore"] != nil else { return }  // a refused case: nothing to load
        let ns = try ScratchNamespace()
        let ipset = try ns.exec(["ipset", "restore"], stdin: files["ipset.restore"])
        #expect(ipset.status == 0, "ipset restore: \(ipset.stderr)")
        for (file, tool) in [("iptables.restore", "iptables-restore"), ("ip6tables.restore", "ip6tables-restore")] {
            guard let text = files[file] else { continue }
            let result = try ns.exec([tool, "--noflush"], stdin: text)
            #expect(result.status == 0, "\(tool): \(result.stderr)")
            let save = try ns.exec([tool.replacingOccurrences(of: "-restore", with: "-save"), "-t", "filter"])
            // Everything is in mangle: filter holds nothing of Picket's.
            #expect(!save.stdout.contains("PICKET"), "\(save.stdout)")
            let mangle = try ns.exec([tool.replacingOccurrences(of: "-restore", with: "-save"), "-t", "mangle"])
            // Each hook is its built-in chain's one rule of Picket's: the seen-flow test and the jump.
            for builtin in ["FORWARD", "INPUT"] {
                let hooks = mangle.stdout.split(separator: "\n").filter { $0.hasPrefix("-A \(builtin) ") }
                #expect(hooks.count == 1 && hooks[0].hasPrefix("-A \(builtin) -m connlabel ! --label ")
                    && hooks[0].hasSuffix(" -j PICKET-MARK-\(builtin)"), "\(hooks)")
            }
            // Every rule the kernel holds carries the identity it was compiled with, in order.
            let compiled = compile(fixture.load().snapshot, node: fixture.node, options: fixture.options)
            let table = tool == "iptables-restore" ? compiled.ipv4 : compiled.ipv6!
            var saved: [String: [String]] = [:]
            for line in (save.stdout + mangle.stdout).split(separator: "\n") where line.hasPrefix("-A PICKET-") {
                let words = line.split(separator: " ", maxSplits: 2)
                saved[String(words[1]), default: []].append(RuleIdentity.identity(ofSaved: words[2]))
            }
            for chain in table.chains where !chain.rules.isEmpty {
                #expect(saved[chain.name] == chain.ruleHashes, "\(chain.name)")
            }
        }
    }
}

/// Problems that would make a ruleset fail to load or behave unlike its text: jumps to missing
/// chains, references to missing sets, sets nothing uses, names over the kernel's limits.
func checkConsistency(_ ruleset: Ruleset) -> [String] {
    var problems: [String] = []
    let setsByName = Dictionary(grouping: ruleset.sets, by: \.name)
    for (name, sets) in setsByName where sets.count > 1 { problems.append("set \(name) defined \(sets.count) times") }
    var used = Set<String>()
    for set in ruleset.sets {
        if set.name.count > Names.maxSetLength { problems.append("set name too long: \(set.name)") }
        if !set.name.hasPrefix(Names.setPrefix) { problems.append("set without prefix: \(set.name)") }
    }
    let builtinTargets: Set<String> = ["ACCEPT", "DROP", "RETURN", "MARK", "CONNMARK", "REJECT", "SET"]
    for table in ruleset.tables {
        let chains = Set(table.chains.map(\.name))
        if chains.count != table.chains.count { problems.append("v\(table.family.rawValue): a chain is declared twice") }
        for chain in table.chains {
            if chain.name.count > Names.maxChainLength { problems.append("chain name too long: \(chain.name)") }
            if !chain.name.hasPrefix(Names.chainPrefix) { problems.append("chain without prefix: \(chain.name)") }
        }
        for hook in table.hooks where !chains.contains(hook.target) { problems.append("hook to missing chain \(hook.target)") }
        for chain in table.chains {
            for rule in chain.rules {
                for (i, word) in rule.enumerated() where i + 1 < rule.count {
                    let next = rule[i + 1]
                    if word == "-j" || word == "-g" {
                        if !chains.contains(next) && !builtinTargets.contains(next) {
                            problems.append("\(chain.name): jump to missing chain \(next)")
                        }
                    }
                    if word == "--match-set" || word == "--map-set" {
                        used.insert(next)
                        guard let set = setsByName[next]?.first else {
                            problems.append("\(chain.name): missing set \(next)")
                            continue
                        }
                        if set.family != table.family { problems.append("\(chain.name): set \(next) of the other family") }
                    }
                }
            }
        }
    }
    for set in ruleset.sets where !used.contains(set.name) { problems.append("set \(set.name) is used by no rule") }
    // nf_tables refuses a chain graph deeper than 16 levels from the base chain.
    if chainDepth(ruleset) > 15 { problems.append("chains nest \(chainDepth(ruleset)) deep below a built-in chain") }
    return problems
}
