// Seeded random cluster states (Fuzzer.swift) on one cluster of the x/y/z model, each applied in
// place with `picket apply` and checked kernel vs evaluator over the whole matrix.
//
//   PICKET_FUZZ_CASES=N   how many IPv4 cases (default 10; `make fuzz` runs 200); the
//                         dual-stack test runs a quarter as many (at least one)
//   PICKET_FUZZ_SEED=S    the first case's seed (decimal or 0x-hex); later cases take seeds
//                         drawn from it. Given alone, each test runs only that case: a failing
//                         case prints its seed and the command that replays it exactly.

import Foundation
import KubeModel
import Testing

/// The fuzz run's parameters, from the environment.
struct FuzzConfig: Sendable {
    /// The default first seed: "PICKET" in ASCII. Fixed so that `swift test` is repeatable.
    static let defaultSeed: UInt64 = 0x5049_434B_4554

    /// The first seed.
    var first: UInt64
    /// IPv4 cases.
    var count: Int
    /// Whether PICKET_FUZZ_SEED was given without PICKET_FUZZ_CASES (replay one case).
    var replay: Bool
    /// What is wrong with the environment's values, if anything.
    var problem: String?

    /// Reads PICKET_FUZZ_CASES and PICKET_FUZZ_SEED.
    static let current: FuzzConfig = {
        let environment = ProcessInfo.processInfo.environment
        var config = FuzzConfig(first: defaultSeed, count: 10, replay: false, problem: nil)
        if let text = environment["PICKET_FUZZ_SEED"], !text.isEmpty {
            if let seed = parseSeed(text) {
                config.first = seed
                config.count = 1
                config.replay = true
            } else {
                config.problem = "PICKET_FUZZ_SEED=\(text) is not a decimal or 0x-hexadecimal 64-bit number"
            }
        }
        if let text = environment["PICKET_FUZZ_CASES"], !text.isEmpty {
            if let n = Int(text), n >= 1, n <= 100_000 {
                config.count = n
                config.replay = false
            } else {
                config.problem = "PICKET_FUZZ_CASES=\(text) is not a number from 1 to 100000"
            }
        }
        return config
    }()

    /// The case seeds of the IPv4 or the dual-stack test: the first seed, then seeds drawn from
    /// it (the dual-stack test draws from the first seed with its bits flipped, so its cases
    /// differ from the IPv4 ones; a replay uses the seed as given).
    func seeds(dualStack: Bool) -> [UInt64] {
        let n = dualStack && !replay ? max(1, count / 4) : count
        let start = dualStack && !replay ? ~first : first
        var seeds = [start]
        var draw = SplitMix64(seed: start)
        while seeds.count < n { seeds.append(draw.next()) }
        return seeds
    }

    /// A time limit that grows with the number of cases (about 3 s an IPv4 case, 5 dual-stack).
    static var minutes: Int {
        max(3, (current.seeds(dualStack: false).count * 4 + current.seeds(dualStack: true).count * 6) / 60 + 2)
    }

    private static func parseSeed(_ text: String) -> UInt64? {
        let lower = text.lowercased()
        return lower.hasPrefix("0x") ? UInt64(lower.dropFirst(2), radix: 16) : UInt64(lower)
    }

    /// `0x...`, as PICKET_FUZZ_SEED takes it.
    static func hex(_ seed: UInt64) -> String { "0x" + String(seed, radix: 16) }
}

extension KernelSuite {
    @Suite("Kernel: seeded random labels and policies, kernel vs evaluator", .timeLimit(.minutes(FuzzConfig.minutes)))
    struct FuzzTests {
        @Test("random clusters and policies on the x/y/z model, IPv4 (PICKET_FUZZ_CASES, PICKET_FUZZ_SEED)")
        func randomPoliciesIPv4() throws {
            try run(dualStack: false, test: "randomPoliciesIPv4")
        }

        @Test("random clusters and policies on the x/y/z model, dual-stack (ipBlocks of both families)")
        func randomPoliciesDualStack() throws {
            try run(dualStack: true, test: "randomPoliciesDualStack")
        }

        private func run(dualStack: Bool, test: String) throws {
            let config = FuzzConfig.current
            if let problem = config.problem {
                Issue.record(Comment(rawValue: problem))
                return
            }
            let seeds = config.seeds(dualStack: dualStack)
            let fuzzer = Fuzzer(dualStack: dualStack)
            let cluster = try NetnsCluster.create(pods: UpstreamModel.pods(dualStack: dualStack), ports: [80, 81])
            defer {
                for problem in cluster.shutdown() { Issue.record(Comment(rawValue: "teardown: \(problem)")) }
            }
            let name = "fuzz" + (dualStack ? " (dual-stack)" : " (IPv4)")
            let run = OracleRun(name, cluster: cluster, selection: .everything, ports: UpstreamModel.probePorts)
            try run.baseline()
            var failing: [UInt64] = []
            for (i, seed) in seeds.enumerated() {
                let manifests = fuzzer.manifests(seed: seed)
                let seedText = FuzzConfig.hex(seed)
                let replay = "PICKET_FUZZ_SEED=\(seedText) swift test --skip-build --filter \(test)"
                let title = "case \(i + 1)/\(seeds.count) seed \(seedText): \(manifests.policies.count) policies"
                do {
                    if try run.check(title, manifests, replay: replay) > 0 { failing.append(seed) }
                } catch {
                    failing.append(seed)
                    Issue.record(Comment(rawValue: "\(title)\nreplay: \(replay)\n\(error)"))
                }
            }
            print(run.summary())
            if !failing.isEmpty {
                print("KernelTests \(name): failing seeds: \(failing.map(FuzzConfig.hex).joined(separator: " "))")
            }
        }
    }
}
