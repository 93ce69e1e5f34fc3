// Kernel tests: Picket's rules, applied by the executor (`picket apply`) in the network
// namespaces of a two-node cluster built from namespaces, checked with real TCP and UDP packets,
// for sources and destinations on the same node, on different nodes, the nodes themselves and
// hosts outside the cluster.
//
//   SeedCaseTests      the seed document's test table, hand-written expectations
//   UpstreamCaseTests  the upstream e2e suite's x/y/z model and cases, the evaluator as oracle
//   FuzzTests          seeded random labels and policies, the evaluator as oracle
//
// Run (as root): swift build --build-tests && swift test --skip-build --filter KernelTests
// (a few minutes; suites and tests run one at a time). PICKET_KERNEL_CASE=<text> runs only the
// upstream cases whose title contains <text>; PICKET_FUZZ_CASES / PICKET_FUZZ_SEED steer the
// fuzzer (see FuzzTests.swift). Without root or the tools, every test here is skipped and says
// why. Every namespace is named pkt-<pid>-<n>-* and removed at the end of its test, also when
// the test fails.

import Foundation
import Synchronization
import Testing

/// Whether this machine can run the kernel tests, decided once.
enum KernelEnvironment {
    /// The tools the harness runs.
    static let tools = [
        "ip", "ipset", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", "conntrack", "sysctl", "python3",
    ]

    /// Why the kernel tests cannot run here, or nil when they can.
    static let problem: String? = {
        // A tool that exits before reading all of its input must not kill the test process.
        signal(SIGPIPE, SIG_IGN)
        if getuid() != 0 { return "not running as root (network namespaces and iptables need it)" }
        let missing = tools.filter { Command.which($0) == nil }
        if !missing.isEmpty { return "missing tools: \(missing.joined(separator: ", ")) (make deps installs them)" }
        if !FileManager.default.isExecutableFile(atPath: NetnsCluster.picket) {
            return "the picket executable is not next to the test bundle (\(NetnsCluster.picket)): build it with swift build --build-tests"
        }
        let bridgeSysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"
        if !FileManager.default.fileExists(atPath: bridgeSysctl) {
            do {
                try Command.run(["modprobe", "br_netfilter"])
            } catch {
                return "br_netfilter is not loaded and cannot be: \(error)"
            }
            if !FileManager.default.fileExists(atPath: bridgeSysctl) { return "br_netfilter loaded but \(bridgeSysctl) is missing" }
        }
        return nil
    }()

    /// True when the tests can run; otherwise prints, once and loudly, why they are skipped.
    static var isReady: Bool {
        guard let problem else { return true }
        announce(problem)
        return false
    }

    private static let announced = Mutex(false)

    private static func announce(_ problem: String) {
        announced.withLock { done in
            guard !done else { return }
            done = true
            print("""
                ************************************************************************
                KernelTests SKIPPED: \(problem)
                The enforcement of NetworkPolicy in a real kernel is NOT being tested.
                ************************************************************************
                """)
        }
    }
}

/// Every kernel suite, nested here so that they run one at a time (probes time out when two
/// matrices compete for the two cores) and are skipped together, loudly, without root.
@Suite(
    "Kernel",
    .serialized,
    .enabled(if: KernelEnvironment.isReady, "needs root, iproute2, ipset, iptables, conntrack, python3, br_netfilter and the built picket"))
enum KernelSuite {}
