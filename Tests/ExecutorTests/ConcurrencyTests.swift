import Executor
import Foundation
import Glibc
import IPSetKit
import KubeModel
import PolicyCompiler
import Testing

/// One executor applying in one namespace on a thread of its own.
private final class Racer: @unchecked Sendable {
    // @unchecked: `failure` is written by the racing thread before it leaves the group and read
    // after the group was waited for.
    let executor = Executor(kernel: SystemKernel())
    let path: String
    var failure: String?

    init(path: String) { self.path = path }

    /// Applies `ruleset` in the namespace, recording a failure as text.
    func apply(_ ruleset: Ruleset) {
        do {
            try onThread(inNetworkNamespaceAt: path) { () throws -> Void in try executor.apply(ruleset) }
            failure = nil
        } catch {
            failure = "\(error)"
        }
    }
}

/// A child process of this test process: its pid, name, and blocked-signal mask.
struct Child: CustomStringConvertible {
    var pid: Int32
    var name: String
    var blockedSignals: String

    var description: String { "pid \(pid) \(name) SigBlk \(blockedSignals)" }

    /// This process's children whose name starts with `prefix` (comm is cut at 15 characters).
    static func all(named prefix: String) -> [Child] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard let pid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
            let name = String(stat[stat.index(after: open)..<close])
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, Int32(fields[1]) == getpid(), name.hasPrefix(prefix) else { return nil }
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let blocked = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }.map { String($0.dropFirst(7)).trimmingCharacters(in: .whitespaces) } ?? "?"
            return Child(pid: pid, name: name, blockedSignals: blocked)
        }
    }
}

/// Two executors of one process at the same time, as a daemon with more than one sync thread,
/// or any other code of the process spawning while the executor restores, would do.
@Suite("Executor: concurrent use in one process", kernelOnly)
struct ConcurrencyTests {
    @Test("two executors applying at the same time in two namespaces both finish")
    func concurrentApplies() throws {
        // Holds the executor lock: no other test's executor runs meanwhile, so every
        // iptables-restore child of this process found below belongs to this test.
        executorCalls.lock()
        defer { executorCalls.unlock() }
        try withScratchNamespace { first in
            try withScratchNamespace { second in
                let rulesets = [Shop().ruleset, Shop.with { $0.policies.append(apiAllowWeb) }.ruleset]
                let racers = [Racer(path: first.path), Racer(path: second.path)]
                var hung: (round: Int, children: [Child])?
                var failures: [String] = []
                for round in 0..<12 {
                    let group = DispatchGroup()
                    for racer in racers {
                        group.enter()
                        Thread {
                            racer.apply(rulesets[round % 2])
                            group.leave()
                        }.start()
                    }
                    if group.wait(timeout: .now() + 3) == .timedOut {
                        // Deadlocked: end our own stuck children, by pid (SIGKILL: the executor
                        // spawns them with the signals of its thread blocked, SIGTERM included).
                        let stuck = Child.all(named: "iptables-resto") + Child.all(named: "ip6tables-rest")
                        hung = (round, stuck)
                        for child in stuck { kill(child.pid, SIGKILL) }
                        if group.wait(timeout: .now() + 10) == .timedOut {
                            Issue.record("the racing threads did not finish even after their children were killed")
                        }
                        break
                    }
                    failures += racers.compactMap(\.failure).map { "round \(round): \($0)" }
                }
                if let hung {
                    print("ExecutorTests.concurrentApplies: deadlock in round \(hung.round); stuck children, killed: \(hung.children)")
                }
                #expect(failures.isEmpty, "\(failures)")
                #expect(hung == nil, "two concurrent applies deadlocked in round \(hung?.round ?? -1): \(hung?.children ?? [])")

            }
        }
    }
}
