// The upstream NetworkPolicy e2e cases (UpstreamModel.swift) on one cluster of the x/y/z model:
// built once, then each step of each case applied in place with `picket apply` (conntrack
// flushed after every apply), the whole matrix probed and compared with the evaluator.

import Foundation
import KubeModel
import Testing

extension KernelSuite {
    @Suite("Kernel: upstream NetworkPolicy e2e cases on the x/y/z model, kernel vs evaluator", .timeLimit(.minutes(5)))
    struct UpstreamCaseTests {
        @Test("upstream e2e cases, IPv4: one cluster, every step re-applied in place")
        func upstreamCasesIPv4() throws {
            try run(UpstreamCases.all(), dualStack: false, name: "upstream e2e (IPv4)")
        }

        @Test("upstream e2e cases over IPv4 and IPv6 in a dual-stack cluster (ipBlocks from IPv6 addresses)")
        func upstreamCasesDualStack() throws {
            try run(UpstreamCases.dualStack(), dualStack: true, name: "upstream e2e (dual-stack)")
        }

        /// Cases whose title contains PICKET_KERNEL_CASE, or all.
        private func selected(_ cases: [ModelCase]) -> [ModelCase] {
            guard let filter = ProcessInfo.processInfo.environment["PICKET_KERNEL_CASE"], !filter.isEmpty else { return cases }
            return cases.filter { $0.description.localizedCaseInsensitiveContains(filter) }
        }

        private func run(_ cases: [ModelCase], dualStack: Bool, name: String) throws {
            let cases = selected(cases)
            guard !cases.isEmpty else {
                print("KernelTests \(name): no case matches PICKET_KERNEL_CASE")
                return
            }
            let cluster = try NetnsCluster.create(pods: UpstreamModel.pods(dualStack: dualStack), ports: [80, 81])
            defer {
                for problem in cluster.shutdown() { Issue.record(Comment(rawValue: "teardown: \(problem)")) }
            }
            let run = OracleRun(name, cluster: cluster, selection: .everything, ports: UpstreamModel.probePorts)
            try run.baseline()
            for (n, kase) in cases.enumerated() {
                for (i, step) in kase.steps.enumerated() {
                    let title = "case \(n + 1)/\(cases.count) \(kase) — step \(i + 1)/\(kase.steps.count): \(step.title)"
                    do {
                        try run.check(title, step.manifests(dualStack: dualStack))
                    } catch {
                        Issue.record(Comment(rawValue: "\(title)\n\(error)"))
                        break
                    }
                }
            }
            if !dualStack {
                // The comparison must be able to fail: no rules in force, an evaluator told that
                // x denies everything in and out. (Kernel denials the evaluator does not expect
                // are re-probed for 2 s each: this direction is the cheap one to prove.)
                let open = ModelStep(title: "no policy", policies: []).manifests(dualStack: false)
                let denyAll = ModelStep(title: "deny all in x", policies: [UpstreamCases.denyAllX]).manifests(dualStack: false)
                let check = try run.selfCheck(applied: open, evaluated: denyAll)
                #expect(!check.mismatched.isEmpty && check.mismatched == check.predicted,
                        "self-check: mismatches seen \(check.mismatched.count), predicted \(check.predicted.count)")
            }
            print(run.summary())
        }
    }
}
