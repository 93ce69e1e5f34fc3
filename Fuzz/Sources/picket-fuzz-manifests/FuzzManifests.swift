// libFuzzer entry point: manifests in, rules out. Each input is decoded as a manifest file,
// compiled for node-a and for the nodes its pods name, and rendered; the process traps (a
// crash libFuzzer reports) when an issue line is not one line of printable text, or when a
// restore text has a line outside Picket's chains and sets (`RestoreGuard`). Decoding errors
// are the expected outcome of most inputs and are not failures.

import KubeModel
import PolicyCompiler

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let set = ManifestDecoder.decode(text, source: "fuzz")
    for issue in set.issues where issue.description.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
        fatalError("an issue line holds a control character: \(issue.description.debugDescription)")
    }
    let snapshot = set.snapshot
    var nodes = ["node-a"]
    for pod in snapshot.pods.prefix(3) { if let node = pod.nodeName, !nodes.contains(node) { nodes.append(node) } }
    let check = RestoreGuard.standard
    for node in nodes {
        let ruleset = compile(snapshot, node: node)
        let sets = check.violations(inSetRestore: ruleset.ipsetRestore(node: node))
        if let first = sets.first { fatalError("ipset.restore for node \(node.debugDescription): \(first)") }
        for family in IPAddress.Family.allCases {
            guard let restore = ruleset.iptablesRestore(family: family, node: node) else { continue }
            if let first = check.violations(inTableRestore: restore).first {
                fatalError("iptables.restore (\(family)) for node \(node.debugDescription): \(first)")
            }
        }
    }
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main` (aliased to `main`), which
// shadows libFuzzer's own `main`: this entry hands control to libFuzzer's driver instead.
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("picket_fuzz_manifests_main")
public func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzz)
}
