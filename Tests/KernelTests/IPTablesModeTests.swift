// deploy/iptables-mode.sh picks the iptables backend a node already uses, in network namespaces
// holding rules of one backend, the other, or none.

import Foundation
import Testing

extension KernelSuite {
    @Suite("Kernel: the image's iptables backend choice", .timeLimit(.minutes(1)))
    struct IPTablesModeTests {
        static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/iptables-mode.sh").path

        @Test("rules of legacy -> legacy, of nft -> nft, none (a loaded legacy filter table) -> nft")
        func choosesTheBackendInUse() throws {
            for (setup, expected) in [("none", "nft"), ("legacy", "legacy"), ("nft", "nft")] {
                let namespace = "pkt-mode-\(getpid())-\(setup)"
                try Command.run(["ip", "netns", "add", namespace])
                defer { _ = try? Command.run(["ip", "netns", "delete", namespace]) }
                if setup != "none" {
                    try Command.run(["ip", "netns", "exec", namespace, "iptables-\(setup)", "-N", "KUBE-KUBELET-CANARY"])
                }
                try Command.run(["ip", "netns", "exec", namespace, "iptables-legacy", "-L"])
                let chosen = try Command.run(["ip", "netns", "exec", namespace, "sh", Self.script, "--print"]).stdout
                #expect(chosen.trimmingCharacters(in: .whitespacesAndNewlines) == expected, "\(setup)")
            }
        }
    }
}
