import Executor
import Foundation
import KubeModel
import PolicyCompiler
import Testing

/// "name +added -removed" for each set change of a report.
func changes(_ list: [ApplyReport.SetChange]) -> [String] {
    list.map { "\($0.name) +\($0.added) -\($0.removed)" }
}

/// The executor applying compiled rulesets in scratch network namespaces: what it writes (a
/// `CountingKernel` records every call) and what the kernel then holds (iptables-save, ipset save).
@Suite("Executor: apply in a real kernel", kernelOnly)
struct ApplyTests {
    @Test("apply twice: the second apply is a no-op and writes nothing; verify reads but writes nothing; without verify it does not even read")
    func applyTwice() throws {
        try withScratchNamespace { namespace in
            let ruleset = Shop().ruleset
            let (executor, log) = countingExecutor()
            let first = try namespace.inside { try executor.apply(ruleset) }
            #expect(first.setsCreated.map(\.name) == ruleset.sets.map(\.name))
            #expect(first.chainsWritten.sorted() == ruleset.ipv4.chains.map { "ipv4 \($0.name)" }.sorted())
            #expect(first.hooksRepaired == ["ipv4 mangle"])
            #expect(log.tableRestores.map(\.family) == [.v4])
            try expectKernelHolds(ruleset, in: namespace)

            log.reset()
            let second = try namespace.inside { try executor.apply(ruleset) }
            #expect(second.isEmpty)
            #expect(second.description == "no change")
            #expect(log.calls.isEmpty, "without verify, an unchanged ruleset must not even read the kernel: \(log.calls)")

            log.reset()
            let verified = try namespace.inside { try executor.apply(ruleset, verify: true) }
            #expect(verified.isEmpty, "\(verified)")
            #expect(log.writes.isEmpty, "\(log.writes)")
            // The read-back, then the fingerprint the next scheduled verify compares against.
            #expect(log.reads == [.saveSets, .saveTable(.v4), .saveTable(.v6), .fingerprint])

            // An executor without memory (as `picket apply` is) finds nothing to do either.
            let (fresh, freshLog) = countingExecutor()
            let again = try namespace.inside { try fresh.apply(ruleset, verify: true) }
            #expect(again.isEmpty, "\(again)")
            #expect(freshLog.writes.isEmpty, "\(freshLog.writes)")
            try expectKernelHolds(ruleset, in: namespace)
        }
    }

    @Test("a remote peer pod changes its address: only its peer set changes (+1 -1), no table is written")
    func remotePeerMoves() throws {
        try withScratchNamespace { namespace in
            let before = Shop().ruleset
            let after = Shop.with { $0.pod("client") { $0.ips = [IPAddress("10.244.2.6")!] } }.ruleset
            let peerSets = sets(of: before, holding: "10.244.2.5")
            try #require(peerSets.count == 1, "client is a peer of web-allow-client only: \(peerSets)")
            let peerSet = peerSets[0]

            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(before) }
            log.reset()
            let report = try namespace.inside { try executor.apply(after) }

            #expect(log.setRestores == [["add \(peerSet) 10.244.2.6", "del \(peerSet) 10.244.2.5"]])
            #expect(log.tableRestores.isEmpty, "\(log.tableRestores.map(\.text))")
            #expect(changes(report.setsUpdated) == ["\(peerSet) +1 -1"])
            #expect(report.description == "set updated: \(peerSet) (+1 -1)")
            // web no longer admits the old address: flows involving it are re-checked.
            #expect(log.conntrackRechecks == [[IPAddress("10.244.2.5")!]])
            try expectKernelHolds(after, in: namespace)
        }
    }

    @Test("conntrack marking fails after the rules are committed: apply returns with the failure told, not thrown, and memory stands for the kernel")
    func conntrackFailureAfterCommit() throws {
        try withScratchNamespace { namespace in
            let before = Shop().ruleset
            let after = Shop.with { $0.pod("client") { $0.ips = [IPAddress("10.244.2.6")!] } }.ruleset
            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(before) }
            log.fault = { call in
                if case .recheckConntrack = call { return ApplyError(step: "conntrack mark", message: "netlink: Operation not permitted") }
                return nil
            }
            let report = try namespace.inside { try executor.apply(after) }
            #expect(report.conntrackFailure?.description == "conntrack mark: netlink: Operation not permitted")
            #expect(report.conntrackMarked == 0)
            #expect(!report.isEmpty, "the rules changed: \(report)")
            try expectKernelHolds(after, in: namespace)
            // The committed state is the executor's memory: the same ruleset again changes nothing.
            log.fault = nil
            log.reset()
            #expect(try namespace.inside { try executor.apply(after) }.isEmpty)
            #expect(log.calls.isEmpty, "\(log.calls)")
        }
    }

    @Test("a local selected pod changes its address: one dispatch-set member leaves before, one joins after, no iptables-restore")
    func localPodMoves() throws {
        try withScratchNamespace { namespace in
            let before = Shop().ruleset
            let after = Shop.with { $0.pod("web") { $0.ips = [IPAddress("10.244.1.9")!] } }.ruleset
            let dispatch = Names.dispatchSet(.ingress, .v4)
            try #require(sets(of: before, holding: "10.244.1.2") == [dispatch])
            let set = try #require(after.sets.first { $0.name == dispatch })
            let tag = set.text(of: try #require(set.members.first { $0.block.address == IPAddress("10.244.1.9")! }))

            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(before) }
            log.reset()
            let report = try namespace.inside { try executor.apply(after) }

            // Leaves before the rules step would run; joins (tagged with its group) after.
            #expect(log.setRestores == [["del \(dispatch) 10.244.1.2", "add -exist \(dispatch) \(tag)"]])
            #expect(log.tableRestores.isEmpty, "\(log.tableRestores.map(\.text))")
            #expect(changes(report.setsUpdated) == ["\(dispatch) +1 -1"])
            #expect(report.setsCreated.isEmpty && report.setsDestroyed.isEmpty && report.chainsWritten.isEmpty)
            #expect(log.conntrackRechecks == [[IPAddress("10.244.1.9")!]])
            try expectKernelHolds(after, in: namespace)
        }
    }

    @Test("4,096 ingress groups (a 26-bit mask) load into the kernel: the dispatch tree stays within nf_tables' chain depth")
    func fourThousandGroupsLoad() throws {
        try withScratchNamespace { namespace in
            var pods: [Pod] = []
            var policies: [Policy] = []
            for n in 0..<4_096 {
                pods.append(makePod("ns-\(n)", "pod", ip: "10.\(100 + n / 65_536).\(n / 256 % 256).\(n % 256)"))
                policies.append(makePolicy("ns-\(n)", "own") { $0.ingress = [.init(peers: [.init(podSelector: LabelSelector())])] })
            }
            let options = CompileOptions(marks: try MarkLayout(mask: 0xffff_3ff0))
            let ruleset = compile(ClusterSnapshot(pods: pods, policies: policies), node: "node-a", options: options)
            #expect(ruleset.dispatch.first { $0.direction == .ingress }?.groups.count == 4_096)
            let report = try namespace.inside { try Executor(kernel: SystemKernel()).apply(ruleset) }
            #expect(!report.isEmpty)
            try expectKernelHolds(ruleset, in: namespace)
        }
    }

    @Test("the deepest dispatch tree 13 bits allow (ten gotos: the chain graph at nf_tables' 16 levels) loads, and every group is reached")
    func deepestTreeLoads() throws {
        // Numbers that make the tree branch at each of the top ten bits of 0b1_1111_1111_1000 with
        // at least two numbers on its side: 1, then the top i bits for i = 1...9, then that number
        // and one more bit (11 set, the most a group number has).
        let top = (1...10).map { i in ((1 << i) - 1) << (13 - i) }
        let numbers = [1] + top + [top[9] | 0b100]
        var pods: [Pod] = []
        var policies: [Policy] = []
        for n in numbers.indices {
            pods.append(makePod("ns-\(n)", "pod", ip: "10.100.0.\(n + 1)"))
            policies.append(makePolicy("ns-\(n)", "own") { $0.ingress = [.init(peers: [.init(podSelector: LabelSelector())])] })
        }
        let options = CompileOptions(marks: try MarkLayout(mask: 0xffff_3ff0))
        let fresh = compile(ClusterSnapshot(pods: pods, policies: policies), node: "node-a", options: options)
        let chains = fresh.dispatch.first { $0.direction == .ingress }!.groups.map(\.chain)
        let ruleset = fresh.renumbered(keeping: [.ingress: Dictionary(uniqueKeysWithValues: zip(numbers, chains))])
        #expect(Set(ruleset.dispatchNumbers[.ingress]!.keys) == Set(numbers))
        // The tree chains on the deepest number's path: the root and ten more.
        let tree = Dictionary(uniqueKeysWithValues: ruleset.ipv4.chains.filter { Names.isDispatchTree($0.name) }.map { ($0.name, $0.rules) })
        let deepest = MarkLayout.deposit(numbers.last!, into: ruleset.marks.ingress)
        var path = [Names.treeRoot(.ingress)]
        for _ in 0..<16 {
            let next = tree[path.last!]!.first { rule in
                guard let m = rule.firstIndex(of: "--mark"), rule.last?.hasPrefix("PICKET-DTI-") == true else { return false }
                let parts = rule[m + 1].split(separator: "/").map { UInt32($0.dropFirst(2), radix: 16)! }
                return deepest & parts[1] == parts[0]
            }
            guard let chain = next?.last else { break }
            path.append(chain)
        }
        #expect(path.count == 11, "\(path)")
        try withScratchNamespace { namespace in
            _ = try namespace.inside { try Executor(kernel: SystemKernel()).apply(ruleset) }
            try expectKernelHolds(ruleset, in: namespace)
        }
        for (number, chain) in zip(numbers, chains) {
            #expect(ruleset.dispatchWalk(.ingress, .v4, number: number).chain == chain)
        }
    }

    @Test("a pod moves to a new group: the tree keeps its old number until it is re-tagged, then settles; the node converges")
    func podChangesGroup() throws {
        try withScratchNamespace { namespace in
            let webKey = shopKey("web-second")
            let base = Shop().ruleset
            let moved = Shop.with { $0.policies.append(makePolicy("shop", webKey.name) { spec in
                spec.podSelector = app("web")
                spec.ingress = [.init(ports: [tcp(9999)])]
            }) }.ruleset
            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(base) }
            log.reset()
            try namespace.inside { try executor.apply(moved) }
            // Step 2 (rules, interim tree), step 3 (re-tag), step 4 (final tree, old group gone).
            #expect(log.tableRestores.count == 2, "\(log.tableRestores.map(\.text))")
            let retag = log.setRestores.flatMap { $0 }.filter { $0.hasPrefix("add -exist \(Names.dispatchSet(.ingress, .v4)) 10.244.1.2 ") }
            #expect(retag.count == 1, "web is re-tagged with one line: \(log.setRestores)")
            if let settle = log.tableRestores.last?.text {
                #expect(restoreLines(settle, "-X ").contains { $0.contains("PICKET-GRI-") }, "the old group goes last: \(settle)")
            }
            try expectKernelHolds(moved, in: namespace)
            // Converged: a fresh executor reading the kernel finds nothing to do.
            let again = try namespace.inside { try Executor(kernel: SystemKernel()).apply(moved, verify: true) }
            #expect(again.isEmpty, "\(again)")
        }
    }

    @Test("add a policy, then remove it: only its chains, its sets and the dispatch tree are written, then deleted; other chains untouched")
    func addThenRemovePolicy() throws {
        try withScratchNamespace { namespace in
            let base = Shop().ruleset
            let withPolicy = Shop.with { $0.policies.append(apiAllowWeb) }.ruleset
            let policyChain = Names.policyChain(shopKey("api-allow-web"), .ingress)
            let groupChain = Names.groupChain(.ingress, policies: [shopKey("api-allow-web")])
            let newSets = Set(withPolicy.sets.map(\.name)).subtracting(base.sets.map(\.name)).sorted()
            let dispatch = Names.dispatchSet(.ingress, .v4)
            try #require(newSets.count == 1, "web's peer set: \(newSets)")
            let treeBefore = Set(base.ipv4.chains.map(\.name).filter(Names.isDispatchTree))
            let treeAfter = Set(withPolicy.ipv4.chains.map(\.name).filter(Names.isDispatchTree))
            let treeWritten = treeAfter.subtracting(treeBefore).union([Names.ingressChain]).sorted()

            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(base) }
            let untouched = try namespace.table(.v4)

            // Add: the group's chain, its policy's chain and the tree nodes on its path.
            log.reset()
            let added = try namespace.inside { try executor.apply(withPolicy) }
            #expect(log.tableRestores.count == 1)
            if let text = log.tableRestores.first?.text {
                #expect(declaredChains(text).sorted() == (treeWritten + [groupChain, policyChain]).sorted(), "\(text)")
                #expect(restoreLines(text, "-I ").isEmpty && restoreLines(text, "-D ").isEmpty && restoreLines(text, "-X ").isEmpty, "\(text)")
            }
            let setLines = log.setRestores.flatMap { $0 }
            let created = setLines.filter { $0.hasPrefix("create ") }.map { String($0.split(separator: " ")[1]) }
            #expect(created.sorted() == newSets)
            #expect(!setLines.contains { $0.hasPrefix("destroy ") || $0.hasPrefix("swap ") || $0.hasPrefix("del ") }, "\(setLines)")
            #expect(added.setsCreated.map(\.name).sorted() == newSets)
            #expect(changes(added.setsUpdated) == ["\(dispatch) +1 -0"])
            #expect(added.chainsWritten == (treeWritten + [groupChain, policyChain]).sorted().map { "ipv4 \($0)" })
            #expect(added.chainsDeleted.isEmpty && added.hooksRepaired.isEmpty)
            #expect(log.conntrackRechecks == [[IPAddress("10.244.1.3")!]], "api became isolated for ingress")
            try expectKernelHolds(withPolicy, in: namespace)
            let afterAdd = try namespace.table(.v4)
            for chain in untouched.picketChains.keys where !Names.isDispatchTree(chain) {
                #expect(afterAdd.rules(of: chain) == untouched.rules(of: chain), "\(chain)")
            }

            // Remove: api leaves the dispatch set first; the tree and the stale chains go after.
            log.reset()
            let removed = try namespace.inside { try executor.apply(base) }
            let stale = ([groupChain, policyChain] + treeAfter.subtracting(treeBefore)).sorted()
            #expect(log.tableRestores.count == 1)
            if let text = log.tableRestores.first?.text {
                #expect(restoreLines(text, "-X ").sorted() == stale.map { "-X \($0)" }, "\(text)")
                #expect(restoreLines(text, "-I ").isEmpty && restoreLines(text, "-D ").isEmpty, "\(text)")
            }
            let destroyed = log.setRestores.flatMap { $0 }.filter { $0.hasPrefix("destroy ") }
            #expect(destroyed == newSets.map { "destroy \($0)" })
            #expect(removed.setsDestroyed == newSets)
            #expect(removed.chainsDeleted == stale.map { "ipv4 \($0)" })
            #expect(removed.chainsWritten == ["ipv4 \(Names.ingressChain)"])
            #expect(log.conntrackRechecks.isEmpty, "no pod lost access by removing a policy: \(log.conntrackRechecks)")
            try expectKernelHolds(base, in: namespace)
            #expect(try namespace.table(.v4) == untouched)
        }
    }

    @Test("a peer set outgrowing the default maxelem is refilled in a scratch set and swapped in, and back")
    func resizeBySwap() throws {
        try withScratchNamespace { namespace in
            // 32,768 more clients on node-b: the peer set needs maxelem 131072 (twice its members).
            let crowd = Shop.with { shop in
                for i in 0..<32_768 {
                    let ip = "10.\(100 + i / 65_536).\((i / 256) % 256).\(i % 256)"
                    shop.pods.append(makePod("shop", "c\(i)", node: "node-b", ip: ip, labels: ["app": "client"]))
                }
            }
            let small = Shop().ruleset
            let large = crowd.ruleset
            let peerSet = try #require(sets(of: small, holding: "10.244.2.5").first)
            try #require(large.sets.first { $0.name == peerSet }?.maxElements == 131_072)

            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(small) }
            log.reset()
            let grown = try namespace.inside { try executor.apply(large) }
            let scratch = "picket-tmp-" + String(peerSet.suffix(19))
            let prepare = log.setRestores.first ?? []
            #expect(prepare.first == "create \(scratch) hash:ip family inet hashsize 1024 maxelem 131072")
            #expect(Array(prepare.suffix(2)) == ["swap \(peerSet) \(scratch)", "destroy \(scratch)"])
            #expect(prepare.count == 32_769 + 3)
            #expect(log.tableRestores.isEmpty, "a resize rewrites no chain")
            #expect(changes(grown.setsUpdated) == ["\(peerSet) +32768 -0"])
            let header = try namespace.run("ipset", "list", "-t", peerSet)
            #expect(header.contains("maxelem 131072"), "\(header)")
            #expect(header.contains("Number of entries: 32769"), "\(header)")
            #expect(try namespace.setNames().allSatisfy { !$0.hasPrefix("picket-tmp-") })

            log.reset()
            let shrunk = try namespace.inside { try executor.apply(small, verify: true) }
            #expect(changes(shrunk.setsUpdated) == ["\(peerSet) +0 -32768"])
            try expectKernelHolds(small, in: namespace)
            #expect(try namespace.run("ipset", "list", "-t", peerSet).contains("maxelem 65536"))
        }
    }

    @Test("dual-stack: IPv6 pods get ip6tables chains and hooks; an IPv4-only cluster removes them")
    func dualStack() throws {
        try withScratchNamespace { namespace in
            let dual = Shop.with { $0.dualStack() }.ruleset
            let v4Only = Shop().ruleset
            try #require(dual.ipv6 != nil && dual.sets.contains { $0.family == .v6 })

            let (executor, log) = countingExecutor()
            let first = try namespace.inside { try executor.apply(dual) }
            #expect(log.tableRestores.map(\.family) == [.v4, .v6])
            #expect(first.hooksRepaired == ["ipv4 mangle", "ipv6 mangle"])
            #expect(first.chainsWritten.filter { $0.hasPrefix("ipv6 ") }.count == dual.ipv6!.chains.count)
            try expectKernelHolds(dual, in: namespace)
            #expect(try namespace.table(.v6).picketJumps(in: "FORWARD").count == 1)

            log.reset()
            let back = try namespace.inside { try executor.apply(v4Only) }
            let v6Sets = dual.sets.filter { $0.family == .v6 }.map(\.name).sorted()
            #expect(back.hooksRemoved == ["ipv6 mangle"])
            #expect(back.hooksRepaired.isEmpty)
            #expect(back.chainsDeleted.sorted() == dual.ipv6!.chains.map { "ipv6 \($0.name)" }.sorted())
            #expect(back.chainsWritten.isEmpty, "the IPv4 chains do not change: \(back.chainsWritten)")
            #expect(back.setsDestroyed == v6Sets)
            #expect(log.tableRestores.map(\.family) == [.v6])
            let saved6 = try namespace.table(.v6)
            #expect(saved6.picketChains.isEmpty)
            #expect(saved6.picketJumps(in: "FORWARD").isEmpty && saved6.picketJumps(in: "INPUT").isEmpty)
            try expectKernelHolds(v4Only, in: namespace)

            log.reset()
            #expect(try namespace.inside { try executor.apply(v4Only, verify: true) }.isEmpty)
            #expect(log.writes.isEmpty, "\(log.writes)")
        }
    }
}

/// The package's root directory.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A golden case folder (Fixtures/<name>) with its node.
struct FixtureCase: CustomTestStringConvertible, Sendable {
    var name: String
    var node: String
    var testDescription: String { name }

    /// Every Fixtures/<name> with an `args` file naming `--node`.
    static func all() -> [FixtureCase] {
        let fixtures = packageRoot.appendingPathComponent("Fixtures")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: fixtures.path)) ?? []
        return names.sorted().compactMap { name in
            let args = fixtures.appendingPathComponent(name).appendingPathComponent("args")
            guard let text = try? String(contentsOf: args, encoding: .utf8) else { return nil }
            let words = text.split(whereSeparator: \.isWhitespace).map(String.init)
            guard let i = words.firstIndex(of: "--node"), i + 1 < words.count else { return nil }
            return FixtureCase(name: name, node: words[i + 1])
        }
    }

    /// The compiled ruleset of the case.
    var ruleset: Ruleset {
        let input = packageRoot.appendingPathComponent("Fixtures/\(name)/input").path
        return compile(ManifestLoader.load([input]).snapshot, node: node)
    }
}

/// Every golden case survives the round trip through the kernel: what the executor writes reads
/// back exactly as compiled (iptables-save's and ipset save's spelling of every rule and member),
/// so a verifying apply finds nothing to rewrite.
@Suite("Executor: every golden case round-trips through the kernel", kernelOnly)
struct FixtureRoundTripTests {
    @Test(arguments: FixtureCase.all())
    func roundTrip(_ fixture: FixtureCase) throws {
        try withScratchNamespace { namespace in
            let ruleset = fixture.ruleset
            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(ruleset) }
            try expectKernelHolds(ruleset, in: namespace)
            log.reset()
            let (fresh, freshLog) = countingExecutor()
            let report = try namespace.inside { try fresh.apply(ruleset, verify: true) }
            #expect(report.isEmpty, "a verifying apply of the same rules changed: \(report)")
            #expect(freshLog.writes.isEmpty, "\(freshLog.writes)")
        }
    }
}
