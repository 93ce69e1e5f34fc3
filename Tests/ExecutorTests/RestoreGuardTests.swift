import Executor
import Foundation
import KubeModel
import PolicyCompiler
import Testing

/// A kernel in memory: nothing of Picket's is installed, and every call is recorded. Lets the
/// guard's refusals be checked without root.
final class MemoryKernel: KernelAccess, @unchecked Sendable {
    // @unchecked: used from one test's task only.
    /// Every call, in order.
    var calls: [KernelCall] = []

    func saveSets() throws(ApplyError) -> String {
        calls.append(.saveSets)
        return ""
    }

    func restoreSets(_ lines: [String]) throws(ApplyError) { calls.append(.restoreSets(lines)) }

    func saveTable(_ family: IPAddress.Family) throws(ApplyError) -> String {
        calls.append(.saveTable(family))
        return "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    }

    func restoreTable(_ family: IPAddress.Family, _ text: String) throws(ApplyError) { calls.append(.restoreTable(family, text)) }

    func recheckConntrack(_ addresses: Set<IPAddress>, mark: UInt32, clearingLabel label: Int) throws(ApplyError) -> Int {
        calls.append(.recheckConntrack(addresses))
        return 0
    }

    /// Calls that could have changed a kernel.
    var writes: [KernelCall] { calls.filter(\.isWrite) }
}

/// Rulesets whose text would write outside Picket's chains and sets (as a bug or a tampered
/// value could make them), each with what it tries and a word of the line to be refused.
func tamperedRulesets() -> [(String, Ruleset, String)] {
    let base = Shop().ruleset
    var foreignChain = base
    foreignChain.ipv4.chains.append(Chain(name: "FORWARD", kind: .mark, rules: [["-j", "ACCEPT"]]))
    var foreignHook = base
    foreignHook.ipv4.hooks.append(Hook(builtin: "OUTPUT", target: Names.ingressChain, comment: "picket"))
    var hookToAccept = base
    hookToAccept.ipv4.hooks.append(Hook(builtin: "INPUT", target: "ACCEPT", comment: "picket"))
    var foreignSet = base
    foreignSet.sets.append(IPSet(name: "kube-evil", kind: .hashIP, family: .v4, members: [], purpose: "", role: .peers))
    var foreignJump = base
    foreignJump.ipv4.chains[0].rules.append(["-j", "KUBE-SERVICES"])
    return [
        ("a rule appended to FORWARD", foreignChain, "FORWARD"),
        ("a hook from OUTPUT", foreignHook, "OUTPUT"),
        ("a hook from INPUT to ACCEPT", hookToAccept, "ACCEPT"),
        ("a set without Picket's prefix", foreignSet, "kube-evil"),
        ("a jump to a foreign chain", foreignJump, "KUBE-SERVICES"),
    ]
}

@Suite("Executor: the restore guard")
struct RestoreGuardTests {
    @Test("a plan with a line outside Picket's chains and sets is refused before anything is written")
    func refusedInMemory() {
        for (what, ruleset, marker) in tamperedRulesets() {
            let kernel = MemoryKernel()
            let executor = Executor(kernel: kernel)
            do {
                try executor.apply(ruleset, verify: true)
                Issue.record("\(what): applied")
            } catch {
                #expect(error.step.contains("refused before writing"), "\(what): \(error)")
                #expect(error.message.contains("nothing was written"), "\(what): \(error)")
                #expect(error.context.contains { $0.hasPrefix("> ") && $0.contains(marker) }, "\(what): the refused line is shown: \(error)")
            }
            #expect(kernel.writes.isEmpty, "\(what): \(kernel.writes)")
        }
    }

    @Test("the untampered shop passes the guard and is written")
    func acceptedInMemory() throws {
        let kernel = MemoryKernel()
        try Executor(kernel: kernel).apply(Shop().ruleset, verify: true)
        #expect(!kernel.writes.isEmpty)
    }

    @Test("text injected in names (validation bypassed) is written only inside Picket's chains, in a comment")
    func injectedNamesInMemory() throws {
        let evil = "evil\" -j ACCEPT\n-A FORWARD -j ACCEPT\n#"
        let shop = Shop.with { shop in
            shop.policies.append(Policy(
                key: ObjectKey(namespace: "shop", name: evil), podSelector: Selector(requirements: []), isolates: [.ingress],
                ingress: [], egress: []))
        }
        let kernel = MemoryKernel()
        try Executor(kernel: kernel).apply(shop.ruleset, verify: true)
        for case .restoreTable(_, let text) in kernel.calls {
            #expect(RestoreGuard.standard.violations(inTableRestore: text) == [])
            #expect(!text.contains("\n-A FORWARD"))
        }
    }

    @Test("in a real kernel: a tampered plan is refused and the kernel is left exactly as it was", kernelOnly)
    func refusedInKernel() throws {
        try withScratchNamespace { namespace in
            // Something of Picket's is already there: the refusal must leave it, too.
            let (setup, _) = countingExecutor()
            try namespace.inside { try setup.apply(Shop().ruleset) }
            let tables = try namespace.saveBoth()
            let sets = try namespace.setSave()
            for (what, ruleset, _) in tamperedRulesets() {
                let (executor, log) = countingExecutor()
                let error: ApplyError? = try namespace.inside { () -> ApplyError? in
                    do {
                        try executor.apply(ruleset, verify: true)
                        return nil
                    } catch let error as ApplyError {
                        return error
                    } catch {
                        return ApplyError(step: "unexpected error", message: "\(error)")
                    }
                }
                #expect(error?.step.contains("refused before writing") == true, "\(what): \(String(describing: error))")
                #expect(log.writes.isEmpty, "\(what): \(log.writes)")
                #expect(try namespace.saveBoth() == tables, "\(what)")
                #expect(try namespace.setSave() == sets, "\(what)")
            }
        }
    }

    @Test("in a real kernel: injected names stay inside Picket's chains, read back equal to the compiled text", kernelOnly)
    func injectedNamesInKernel() throws {
        try withScratchNamespace { namespace in
            let evil = "evil\" -j ACCEPT\n-A FORWARD -j ACCEPT\n#\u{0}\u{202E}é'\\"
            let shop = Shop.with { shop in
                shop.policies.append(Policy(
                    key: ObjectKey(namespace: "shop", name: evil), podSelector: Selector(requirements: []), isolates: [.ingress],
                    ingress: [Policy.Rule(index: 0, peers: nil, ports: [])], egress: []))
            }
            let (executor, _) = countingExecutor()
            try namespace.inside { try executor.apply(shop.ruleset, verify: true) }
            let forward = try namespace.table(.v4).rules(of: "FORWARD")
            #expect(forward.count == 1 && forward[0].hasPrefix("-m connlabel ! --label ") && forward[0].hasSuffix(" -j PICKET-MARK-FORWARD"), "\(forward)")
            #expect(try namespace.table(.v4, .filter).rules(of: "FORWARD").isEmpty)
            try expectKernelHolds(shop.ruleset, in: namespace)
            // Read back, the rules equal the compiled text: a fresh verify finds nothing to do.
            let (fresh, freshLog) = countingExecutor()
            let again = try namespace.inside { try fresh.apply(shop.ruleset, verify: true) }
            #expect(again.isEmpty, "\(again)")
            #expect(freshLog.writes.isEmpty, "\(freshLog.writes)")
        }
    }
}
