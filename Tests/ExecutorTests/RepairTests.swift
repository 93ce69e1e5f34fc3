import Executor
import Foundation
import KubeModel
import PolicyCompiler
import Testing

/// A change made behind Picket's back, with what the repairing apply must report.
struct Tamper: CustomTestStringConvertible, Sendable {
    /// What is done.
    var name: String
    /// The command, run with `ip netns exec` after the first apply.
    var command: @Sendable (Ruleset) -> [String]
    /// The report of `apply(verify: true)` afterwards, as `description` lines.
    var report: @Sendable (Ruleset) -> [String]

    var testDescription: String { name }

    /// web-allow-client's ingress chain.
    static let policyChain = Names.policyChain(shopKey("web-allow-client"), .ingress)
    /// The set holding client's address.
    static func peerSet(_ ruleset: Ruleset) -> String { sets(of: ruleset, holding: "10.244.2.5").first ?? "?" }

    static let all: [Tamper] = [
        Tamper(
            name: "(a) a policy chain flushed",
            command: { _ in ["iptables", "-t", "mangle", "-F", policyChain] },
            report: { _ in ["chain written: ipv4 \(policyChain)"] }),
        Tamper(
            name: "(b) a set member deleted",
            command: { ["ipset", "del", peerSet($0), "10.244.2.5"] },
            report: { ["set updated: \(peerSet($0)) (+1 -0)"] }),
        Tamper(
            name: "(c) the FORWARD jump deleted (new connections would go untagged and unjudged: unisolated)",
            command: { _ in ["iptables", "-t", "mangle", "-D", "FORWARD", "1"] },
            report: { _ in ["hooks inserted: ipv4 mangle FORWARD, INPUT"] }),
        Tamper(
            name: "(d) a foreign rule inserted above Picket's jump",
            command: { _ in ["iptables", "-t", "mangle", "-I", "FORWARD", "1", "-s", "192.0.2.0/24", "-j", "ACCEPT"] },
            report: { _ in ["hooks inserted: ipv4 mangle FORWARD, INPUT"] }),
        Tamper(
            name: "(e) a duplicate Picket jump appended",
            command: { _ in ["iptables", "-t", "mangle", "-A", "FORWARD", "-m", "comment", "--comment", "picket: look-alike", "-j", "PICKET-MARK-FORWARD"] },
            report: { _ in ["hooks inserted: ipv4 mangle FORWARD, INPUT"] }),
        Tamper(
            name: "(e2) a duplicate Picket jump inserted first",
            command: { _ in ["iptables", "-t", "mangle", "-I", "FORWARD", "1", "-m", "comment", "--comment", "picket: look-alike", "-j", "PICKET-MARK-FORWARD"] },
            report: { _ in ["hooks inserted: ipv4 mangle FORWARD, INPUT"] }),
        Tamper(
            name: "(e3) a copy of Picket's jump, identity and all, appended",
            command: { ruleset in
                ["iptables", "-t", "mangle", "-A", "FORWARD"] + ruleset.ipv4.hooks.first { $0.builtin == "FORWARD" && $0.table == .mangle }!.stampedRule
            },
            report: { _ in ["hooks inserted: ipv4 mangle FORWARD, INPUT"] }),
        Tamper(
            name: "(e4) a rule of Picket's copied into another of its chains",
            command: { ruleset in
                let group = ruleset.ipv4.chains.first { if case .group = $0.kind { true } else { false } }!
                return ["iptables", "-t", "mangle", "-A", Names.markForwardChain] + group.stampedRules[0]
            },
            report: { _ in ["chain written: ipv4 PICKET-MARK-FORWARD"] }),
        Tamper(
            name: "(f) an ACCEPT-all rule inserted first in PICKET-MARK-FORWARD",
            command: { _ in ["iptables", "-t", "mangle", "-I", "PICKET-MARK-FORWARD", "1", "-j", "ACCEPT"] },
            report: { _ in ["chain written: ipv4 PICKET-MARK-FORWARD"] }),
        Tamper(
            name: "(g) a stray jump into Picket's chain from OUTPUT",
            command: { _ in ["iptables", "-t", "mangle", "-A", "OUTPUT", "-j", "PICKET-MARK-INPUT"] },
            report: { _ in ["hooks inserted: ipv4 mangle FORWARD, INPUT"] }),
        Tamper(
            name: "(g2) the judging layout of an earlier version in filter: a chain of Picket's and its jump",
            command: { _ in ["sh", "-c", "iptables -N PICKET-FORWARD && iptables -A PICKET-FORWARD -j DROP && iptables -I FORWARD 1 -j PICKET-FORWARD"] },
            report: { _ in ["chain deleted: ipv4 PICKET-FORWARD", "hooks removed: ipv4 filter FORWARD, INPUT"] }),
        Tamper(
            name: "(h) the INPUT jump deleted (connections from pods to the node would go unjudged)",
            command: { _ in ["iptables", "-t", "mangle", "-D", "INPUT", "1"] },
            report: { _ in ["hooks inserted: ipv4 mangle FORWARD, INPUT"] }),
        Tamper(
            name: "(i) PICKET-MARK-FORWARD flushed (no dispatch-set lookup: nothing isolated)",
            command: { _ in ["iptables", "-t", "mangle", "-F", "PICKET-MARK-FORWARD"] },
            report: { _ in ["chain written: ipv4 PICKET-MARK-FORWARD"] }),
        Tamper(
            name: "(i2) PICKET-MARK-FORWARD-RECHECK flushed (flagged flows would pass unjudged)",
            command: { _ in ["iptables", "-t", "mangle", "-F", "PICKET-MARK-FORWARD-RECHECK"] },
            report: { _ in ["chain written: ipv4 PICKET-MARK-FORWARD-RECHECK"] }),
    ]
}

/// The foreign FORWARD rule every repair test starts with; it must survive every repair.
let foreignForwardRule = "-s 198.51.100.0/24 -j DROP"

/// Repairs after tampering, and failures that must leave the previous rules in force.
@Suite("Executor: repair and failure in a real kernel", kernelOnly)
struct RepairTests {
    @Test("tamper behind Picket's back, then apply(verify: true) restores exactly the compiled state", arguments: Tamper.all)
    func tamperAndRepair(_ tamper: Tamper) throws {
        try withScratchNamespace { namespace in
            try namespace.run("iptables", "-A", "FORWARD", "-s", "198.51.100.0/24", "-j", "DROP")
            try namespace.run("iptables", "-t", "mangle", "-A", "FORWARD", "-s", "198.51.100.0/24", "-j", "DROP")
            let ruleset = Shop().ruleset
            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(ruleset) }
            try expectKernelHolds(ruleset, in: namespace)

            let command = tamper.command(ruleset)
            let tampered = try namespace.exec(command[0], Array(command.dropFirst()))
            try #require(tampered.status == 0, "tampering failed: \(tampered)")
            let damaged = try namespace.saveBoth() + namespace.setSave()

            // Without verify the executor trusts its memory: nothing is read, nothing repaired.
            log.reset()
            #expect(try namespace.inside { try executor.apply(ruleset) }.isEmpty)
            #expect(log.calls.isEmpty)
            #expect(try namespace.saveBoth() + namespace.setSave() == damaged)

            let report = try namespace.inside { try executor.apply(ruleset, verify: true) }
            #expect(report.description.split(separator: "\n").map(String.init) == tamper.report(ruleset))
            try expectKernelHolds(ruleset, in: namespace)
            let forward = try namespace.table(.v4).rules(of: "FORWARD")
            #expect(forward.first == compiledHooks(ruleset, .v4, "FORWARD").first)
            #expect(forward.contains(foreignForwardRule), "the foreign rule is kept: \(forward)")
            #expect(try namespace.table(.v4, .filter).rules(of: "FORWARD") == [foreignForwardRule], "filter holds only the foreign rule")
            if tamper.name.hasPrefix("(d)") {
                #expect(Array(forward.dropFirst()) == ["-s 192.0.2.0/24 -j ACCEPT", foreignForwardRule])
            }

            // Repaired means stable: another verifying apply writes nothing.
            log.reset()
            #expect(try namespace.inside { try executor.apply(ruleset, verify: true) }.isEmpty)
            #expect(log.writes.isEmpty, "\(log.writes)")
        }
    }

    @Test("verify compares rule identities: rules printed in another, equivalent form are no drift; real drift still is")
    func anotherPrinting() throws {
        try withScratchNamespace { namespace in
            let ruleset = Shop().ruleset
            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(ruleset) }
            // Another iptables build: numbers padded and upper-case, every comment quoted and
            // printed first, the words of each rule spaced twice.
            log.printing = { text in
                text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                    guard line.hasPrefix("-A ") else { return String(line) }
                    return reprinted(String(line))
                }.joined(separator: "\n")
            }
            let sample = log.printing!(try namespace.saveBoth()).split(separator: "\n").first { $0.hasPrefix("-A PICKET-INGRESS") }
            print("ExecutorTests.anotherPrinting: e.g. \(sample ?? "?")")
            try #require(sample.map { !(try namespace.saveBoth()).contains($0) } == true, "the second form differs from the first")

            log.reset()
            let report = try namespace.inside { try executor.apply(ruleset, verify: true) }
            #expect(report.isEmpty, "\(report)")
            #expect(log.writes.isEmpty, "nothing rewritten, no conntrack entry marked: \(log.writes)")

            // A foreign rule in Picket's chain and a deleted rule are still found, in that form.
            try namespace.run("iptables", "-t", "mangle", "-I", Tamper.policyChain, "1", "-j", "ACCEPT")
            try namespace.run("iptables", "-t", "mangle", "-D", Names.markForwardChain, "2")
            let repaired = try namespace.inside { try executor.apply(ruleset, verify: true) }
            #expect(repaired.chainsWritten == ["ipv4 \(Names.markForwardChain)", "ipv4 \(Tamper.policyChain)"])
            try expectKernelHolds(ruleset, in: namespace)
            log.reset()
            #expect(try namespace.inside { try executor.apply(ruleset, verify: true) }.isEmpty)
            #expect(log.writes.isEmpty, "\(log.writes)")
        }
    }

    @Test("a scheduled verify costs a fingerprint while nothing changed, and reads back and repairs when something did")
    func scheduledVerify() throws {
        try withScratchNamespace { namespace in
            guard SystemKernel().backend == .nfTables else {
                print("ExecutorTests.scheduledVerify: SKIPPED: legacy iptables has no generation, every verify reads back")
                return
            }
            let ruleset = Shop().ruleset
            let (executor, log) = countingExecutor()
            let first = try namespace.inside { try executor.apply(ruleset) }
            #expect(first.check == .readBack)

            // Nothing changed: one fingerprint, no table or set read, nothing written.
            log.reset()
            let quiet = try namespace.inside { try executor.apply(ruleset, verification: .scheduled) }
            #expect(quiet.check == .fingerprint)
            #expect(quiet.isEmpty)
            #expect(log.calls == [.fingerprint], "\(log.calls)")
            let due = try #require(quiet.nextVerify)
            #expect(due > .now + .seconds(290) && due <= .now + .seconds(300))

            // Anyone's table change moves the generation: read back, repaired.
            try namespace.run("iptables", "-t", "mangle", "-F", Tamper.policyChain)
            let afterFlush = try namespace.inside { try executor.apply(ruleset, verification: .scheduled) }
            #expect(afterFlush.check == .readBack)
            #expect(afterFlush.chainsWritten == ["ipv4 \(Tamper.policyChain)"])
            try expectKernelHolds(ruleset, in: namespace)
            // A foreign table's change too (nothing of Picket's to repair, but it was read).
            try namespace.run("iptables", "-t", "raw", "-A", "PREROUTING", "-s", "192.0.2.1", "-j", "ACCEPT")
            let foreign = try namespace.inside { try executor.apply(ruleset, verification: .scheduled) }
            #expect(foreign.check == .readBack && foreign.isEmpty, "\(foreign)")

            // A member deleted changes the set's header: read back, repaired.
            try namespace.run("ipset", "del", Tamper.peerSet(ruleset), "10.244.2.5")
            let afterDelete = try namespace.inside { try executor.apply(ruleset, verification: .scheduled) }
            #expect(afterDelete.check == .readBack)
            #expect(afterDelete.description == "set updated: \(Tamper.peerSet(ruleset)) (+1 -0)")
            try expectKernelHolds(ruleset, in: namespace)

            // After all that, quiet again.
            log.reset()
            #expect(try namespace.inside { try executor.apply(ruleset, verification: .scheduled) }.check == .fingerprint)
            #expect(log.calls == [.fingerprint], "\(log.calls)")

            // A fingerprint that cannot be taken means a read-back, not trust.
            log.fault = { $0 == .fingerprint ? ApplyError(step: "nf_tables generation", message: "injected") : nil }
            let blind = try namespace.inside { try executor.apply(ruleset, verification: .scheduled) }
            #expect(blind.check == .readBack && blind.isEmpty)
        }
    }

    @Test("a scheduled verify reads back in full once the last full read is fullReadPeriod old")
    func scheduledFullRead() throws {
        try withScratchNamespace { namespace in
            let ruleset = Shop().ruleset
            let (executor, log) = countingExecutor(schedule: VerifySchedule(verifyPeriod: .seconds(1), fullReadPeriod: .zero))
            try namespace.inside { try executor.apply(ruleset) }
            log.reset()
            let report = try namespace.inside { try executor.apply(ruleset, verification: .scheduled) }
            #expect(report.check == .readBack && report.isEmpty)
            #expect(log.calls.contains(.saveSets) && log.calls.contains(.saveTable(.v4)), "\(log.calls)")
            #expect(log.writes.isEmpty)
            let due = try #require(report.nextVerify)
            #expect(due <= .now + .seconds(1))
            // An apply without verification keeps the due time.
            #expect(try namespace.inside { try executor.apply(ruleset) }.nextVerify == due)
        }
    }

    @Test("a failing iptables-restore leaves the old rules and sets exactly in force, and names the failing line")
    func failingRestore() throws {
        try withScratchNamespace { namespace in
            let stateA = Shop().ruleset
            var stateB = Shop.with { $0.policies.append(apiAllowWeb) }.ruleset
            let broken = Names.policyChain(shopKey("api-allow-web"), .ingress)
            let index = try #require(stateB.ipv4.chains.firstIndex { $0.name == broken })
            stateB.ipv4.chains[index].rules.append(["-m", "nosuchmatch", "-j", "DROP"])

            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(stateA) }
            let tablesBefore = try namespace.saveBoth()
            let setsBefore = try namespace.setSave()
            let namesBefore = try namespace.setNames()

            log.reset()
            let outcome = try namespace.inside { Result { () throws(ApplyError) in try executor.apply(stateB) } }
            guard case .failure(let error) = outcome else {
                Issue.record("an invalid rule was applied: \(outcome)")
                return
            }
            #expect(error.step == "iptables-restore")
            #expect(error.description.contains("iptables-restore"))
            // B's new sets were created first (step 1), then destroyed again after the refusal.
            let created = log.setRestores.first?.filter { $0.hasPrefix("create ") }.map { String($0.split(separator: " ")[1]) } ?? []
            #expect(!created.isEmpty)
            #expect(log.setRestores.dropFirst().flatMap { $0 } == created.map { "destroy \($0)" })
            #expect(try namespace.saveBoth() == tablesBefore)
            #expect(try namespace.setSave() == setsBefore)
            #expect(try namespace.setNames() == namesBefore)
            try expectKernelHolds(stateA, in: namespace)
            // Back to A: nothing to write (the executor may read the kernel back, or trust memory).
            log.reset()
            #expect(try namespace.inside { try executor.apply(stateA) }.isEmpty)
            #expect(log.writes.isEmpty, "\(log.writes)")

            #expect(error.description.contains("> "), "the failing line is marked: \(error)")
            let identity = RuleIdentity.hash(["-m", "nosuchmatch", "-j", "DROP"])
            #expect(
                error.description.contains("-A \(broken) -m nosuchmatch -m comment --comment \"picket:\(identity)\" -j DROP"),
                "the failing line is shown: \(error)")

            print("ExecutorTests.failingRestore: the error as an operator sees it:\n\(error)")
        }
    }

    @Test("a partial failure (IPv6 refused after IPv4 applied) does not let a later apply skip the kernel")
    func partialFailureForgetsMemory() throws {
        try withScratchNamespace { namespace in
            let stateA = Shop.with { $0.dualStack() }.ruleset
            var stateB = Shop.with { $0.dualStack(); $0.policies.append(apiAllowWeb) }.ruleset
            let broken = Names.policyChain(shopKey("api-allow-web"), .ingress)
            let index = try #require(stateB.ipv6?.chains.firstIndex { $0.name == broken })
            stateB.ipv6!.chains[index].rules.append(["-m", "nosuchmatch", "-j", "DROP"])

            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(stateA) }
            let outcome = try namespace.inside { Result { () throws(ApplyError) in try executor.apply(stateB) } }
            guard case .failure(let error) = outcome else {
                Issue.record("an invalid IPv6 rule was applied: \(outcome)")
                return
            }
            #expect(error.step == "ip6tables-restore")
            // IPv4 now holds B's chains (its transaction succeeded), IPv6 still A's.
            #expect(try namespace.table(.v4).picketChains == compiledChains(stateB, .v4))
            #expect(try namespace.table(.v6).picketChains == compiledChains(stateA, .v6))

            // The cluster goes back to A (api-allow-web deleted) before the next periodic resync:
            // the kernel must end up holding A.
            log.reset()
            let back = try namespace.inside { try executor.apply(stateA) }
            let chainsAfter = try namespace.table(.v4).picketChains
            #expect(!back.isEmpty && !log.calls.isEmpty, "apply(A) after the failure did nothing: \(back)")
            #expect(chainsAfter == compiledChains(stateA, .v4))

            // A verifying apply repairs it in any case.
            try namespace.inside { try executor.apply(stateA, verify: true) }
            try expectKernelHolds(stateA, in: namespace)
        }
    }

    @Test("a failure after the tables were written, then a retry of the same ruleset, converges", arguments: InjectedFault.all)
    func retryAfterLateFailure(_ fault: InjectedFault) throws {
        try withScratchNamespace { namespace in
            let stateA = Shop().ruleset
            let stateB = Shop.with { $0.policies.append(apiAllowWeb) }.ruleset
            let (executor, log) = countingExecutor()
            try namespace.inside { try executor.apply(stateA) }

            log.fault = { call in fault.hits(call) ? ApplyError(step: "injected", message: "\(fault.name): injected failure") : nil }
            let failed = try namespace.inside { Result { () throws(ApplyError) in try executor.apply(stateB) } }
            log.fault = nil
            guard case .failure(let error) = failed else {
                Issue.record("the injected fault did not fail the apply")
                return
            }
            #expect(error.message.contains("injected failure"), "\(error)")
            // The tables were written before the failure: IPv4 holds B's chains.
            #expect(try namespace.table(.v4).picketChains == compiledChains(stateB, .v4))

            // The daemon retries the same ruleset at its next sync.
            let retry = try namespace.inside { Result { () throws(ApplyError) in try executor.apply(stateB) } }
            let chains = try namespace.table(.v4).picketChains
            let sets = try namespace.picketSets()
            if case .failure(let error) = retry { Issue.record("the retry failed: \(error)") }
            #expect(chains == compiledChains(stateB, .v4))
            #expect(sets == compiledSets(stateB))

            // A verifying apply repairs it in any case.
            try namespace.inside { try executor.apply(stateB, verify: true) }
            try expectKernelHolds(stateB, in: namespace)
        }
    }
}

/// A fault injected into one kernel call of an apply that adds api-allow-web to the shop. (A
/// conntrack failure after the commit is not an apply failure: see
/// `ApplyTests.conntrackFailureAfterCommit`.)
struct InjectedFault: CustomTestStringConvertible, Sendable {
    /// Which step fails.
    var name: String
    /// Whether a call is the one that fails.
    var hits: @Sendable (KernelCall) -> Bool

    var testDescription: String { name }

    static let all: [InjectedFault] = [
        InjectedFault(name: "step 3 (member deltas) fails") { call in
            if case .restoreSets(let lines) = call { lines.contains { $0.hasPrefix("add -exist \(Names.dispatchSet(.ingress, .v4)) 10.244.1.3 ") } } else { false }
        },
    ]
}

/// `-A CHAIN words...` as a different iptables build could print the same rule: hexadecimal
/// numbers padded to 8 upper-case digits, the comment match first and always quoted, two
/// spaces between words.
func reprinted(_ line: String) -> String {
    var words: [String] = []
    var current = ""
    var quoted = false
    for character in line {
        if character == "\"" { quoted.toggle() }
        if character == " " && !quoted {
            words.append(current)
            current = ""
        } else {
            current.append(character)
        }
    }
    words.append(current)
    var comment: [String] = []
    if let i = words.firstIndex(of: "--comment"), i >= 1, words[i - 1] == "comment", i + 1 < words.count {
        let text = words[i + 1].hasPrefix("\"") ? words[i + 1] : "\"" + words[i + 1] + "\""
        comment = ["-m", "comment", "--comment", text]
        words.removeSubrange((i - 2)...(i + 1))
    }
    let padded = words.map { word -> String in
        word.split(separator: "/", omittingEmptySubsequences: false).map { part -> String in
            guard part.hasPrefix("0x"), let value = UInt32(part.dropFirst(2), radix: 16) else { return String(part) }
            let digits = String(value, radix: 16).uppercased()
            return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
        }.joined(separator: "/")
    }
    return padded.prefix(2).joined(separator: " ") + "  " + (comment + padded.dropFirst(2)).joined(separator: "  ")
}
