import Foundation
import Glibc
import IPSetKit
import Testing

/// Median of `values`.
private func median(_ values: [Duration]) -> Duration {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

/// 100k adds through `IPSetSession.restore` vs an `ipset restore` subprocess. Runs only with
/// PICKET_IPSET_BENCH=1 (about 10 s); prints the medians.
@Suite("Restore benchmark", rootOnly)
struct RestoreBenchmark {
    @Test("100k adds: in-process restore vs ipset restore subprocess",
          .enabled(if: ProcessInfo.processInfo.environment["PICKET_IPSET_BENCH"] == "1"))
    func hundredThousandAdds() throws {
        let rounds = Int(ProcessInfo.processInfo.environment["PICKET_IPSET_BENCH_ROUNDS"] ?? "") ?? 7
        try withScratchSession { session, namespace in
            let count = 100_000
            let members = (1...count).map { "10.\(($0 >> 16) & 255).\(($0 >> 8) & 255).\($0 & 255)" }
            let batch = "create t-bench hash:ip hashsize 65536 maxelem 262144\n"
                + members.map { "add t-bench \($0)\n" }.joined()
            let clock = ContinuousClock()
            var inProcess: [Duration] = [], subprocess: [Duration] = [], spawnOnly: [Duration] = []
            var netnsExec: [Duration] = []
            // Alternate A B A B (FIELD-NOTES: single rounds vary by up to 12%).
            for _ in 0..<rounds {
                inProcess.append(try clock.measure { try session.restore(batch) })
                try session.restore("destroy t-bench\n")
                // Started from a thread inside the scratch namespace, the subprocess inherits it.
                subprocess.append(try onThread(inNetworkNamespaceAt: session.path) {
                    try clock.measure { try run("ipset", ["restore"], input: batch) }
                })
                try session.restore("destroy t-bench\n")
                spawnOnly.append(try onThread(inNetworkNamespaceAt: session.path) {
                    try clock.measure { try run("ipset", ["version"]) }
                })
                // The way a shell script reaches a namespace: `ip netns exec` (also remounts /sys).
                netnsExec.append(try clock.measure {
                    try run("ip", ["netns", "exec", namespace, "ipset", "restore"], input: batch)
                })
                try session.restore("destroy t-bench\n")
            }
            print("""
                IPSetKitTests benchmark, \(count) adds, median of \(rounds) alternating rounds: \
                IPSetSession.restore \(median(inProcess)), `ipset restore` subprocess \
                \(median(subprocess)) (of which starting `ipset version` alone: \(median(spawnOnly))), \
                `ip netns exec NAME ipset restore` \(median(netnsExec)); \
                in-process: \(inProcess), subprocess: \(subprocess)
                """)
        }
    }
}
