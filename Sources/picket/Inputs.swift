import ArgumentParser
import Foundation
import KubeModel
import PolicyCompiler

/// Where cluster objects come from: manifest files and directories.
struct ManifestOptions: ParsableArguments {
    @Option(
        name: .customLong("from"),
        help: ArgumentHelp(
            "A manifest file, or a directory read recursively (*.yaml, *.yml, *.json). Repeatable.",
            discussion: "Files hold objects as `kubectl get -o yaml|json` prints them: single objects, multi-document YAML, or Lists.",
            valueName: "path"))
    var paths: [String] = []

    /// Reads and decodes every manifest under `paths`, in a stable order.
    func load() -> ManifestSet {
        ManifestLoader.load(paths)
    }
}

/// The cluster a command reads: manifests (`--from`) or a live cluster (`--kubeconfig`,
/// `--context`), exactly one of them.
struct InputOptions: ParsableArguments {
    @OptionGroup var manifests: ManifestOptions
    @OptionGroup var cluster: ClusterOptions

    func validate() throws {
        if manifests.paths.isEmpty && !cluster.isLive { throw ValidationError("give at least one --from PATH, or --kubeconfig FILE") }
        if !manifests.paths.isEmpty && cluster.isLive { throw ValidationError("give --from PATH or --kubeconfig FILE, not both") }
    }

    /// The objects: read from the manifests, or listed from the API server (a cluster that
    /// cannot be read is reported and exits 2).
    func load() throws -> ManifestSet {
        cluster.isLive ? try cluster.load() : manifests.load()
    }
}

/// Writes manifest issues to stderr, one line each; returns whether any was an error.
@discardableResult
func report(_ issues: [ManifestIssue]) -> Bool {
    var sawError = false
    for issue in issues {
        sawError = sawError || issue.severity == .error
        FileHandle.standardError.write(Data("picket: \(issue.severity.rawValue): \(issue)\n".utf8))
    }
    return sawError
}

/// Checks a node name given on the command line as the API server checks node names (an RFC
/// 1123 subdomain): each problem is one stderr line naming the option, then exit 2 (invalid
/// input), before anything is read or compiled.
func checkNodeName(_ node: String, option: String = "--node") throws {
    let errors = Validation.nodeName(node, field: option)
    guard !errors.isEmpty else { return }
    for error in errors { printError("picket: error: \(error)") }
    throw ExitCode(2)
}

/// Writes one line to stderr.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// The restore files of a ruleset, by name: ipset.restore, iptables.restore and, when the
/// ruleset has IPv6, ip6tables.restore.
func restoreFiles(_ ruleset: Ruleset, node: String) -> [(name: String, text: String)] {
    var files = [("ipset.restore", ruleset.ipsetRestore(node: node))]
    for family in IPAddress.Family.allCases {
        if let text = ruleset.iptablesRestore(family: family, node: node) {
            files.append((family == .v4 ? "iptables.restore" : "ip6tables.restore", text))
        }
    }
    return files
}

/// Writes restore files into `directory` (created if missing), each atomically, and removes an
/// ip6tables.restore left by an earlier dual-stack run, which would mislead whoever applies it.
func write(_ files: [(name: String, text: String)], to directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let url = URL(fileURLWithPath: directory)
    for (name, text) in files {
        try Data(text.utf8).write(to: url.appendingPathComponent(name), options: .atomic)
    }
    let stale = url.appendingPathComponent("ip6tables.restore")
    if !files.contains(where: { $0.name == "ip6tables.restore" }) && FileManager.default.fileExists(atPath: stale.path) {
        try FileManager.default.removeItem(at: stale)
    }
}

/// The packet-mark bits and the conntrack label bit Picket may use.
struct MarkOptions: ParsableArguments {
    @Option(
        name: .customLong("mark-mask"),
        help: ArgumentHelp(
            "The packet-mark and conntrack-mark bits Picket may use (hex).",
            discussion: """
                Picket never changes a mark bit outside this mask. Its set bits are split in two \
                halves, numbering each isolated pod's egress group (lower half) and ingress group \
                (upper half): n bits per direction number 2^n - 2 groups (the default, 8 bits \
                each, 254; past 12 bits only the numbers with at most 11 bits set, 8,177 of 13 \
                bits). The lowest bit also flags, in the conntrack mark, flows to re-check. \
                Keep it clear of other users of the mark: kube-proxy uses 0x4000 and 0x8000.
                """,
            valueName: "hex"))
    var markMask: String = "0x" + String(MarkLayout.defaultMask, radix: 16)

    @Option(
        name: .customLong("conntrack-label"),
        help: ArgumentHelp(
            "The conntrack label bit (0-127) that marks a flow as judged.",
            discussion: """
                Picket sets this label bit on a flow's conntrack entry when it has judged the \
                flow, and its hooks pass the packets of such flows with one match; it clears the \
                bit when a policy change flags the flow for re-check. Picket changes no other \
                label bit. Keep it clear of other users of conntrack labels.
                """,
            valueName: "bit"))
    var conntrackLabel: Int = MarkLayout.defaultSeenLabel

    func validate() throws {
        _ = try layout()
    }

    /// The layout the mask describes.
    func layout() throws -> MarkLayout {
        let digits = markMask.lowercased().hasPrefix("0x") ? String(markMask.dropFirst(2)) : markMask
        guard !digits.isEmpty, let mask = UInt32(digits, radix: 16) else {
            throw ValidationError("--mark-mask: '\(markMask)' is not a 32-bit hexadecimal number")
        }
        // Each option's own error, whichever is wrong: the mask alone, then the label with it.
        let layout: MarkLayout
        do {
            layout = try MarkLayout(mask: mask)
        } catch {
            throw ValidationError("--mark-mask: \(error)")
        }
        do {
            return try MarkLayout(mask: layout.mask, seenLabel: conntrackLabel)
        } catch {
            throw ValidationError("--conntrack-label: \(error)")
        }
    }

    /// Compile options with this mask.
    func compileOptions() -> CompileOptions {
        // validate() ran before any command body.
        CompileOptions(marks: (try? layout()) ?? MarkLayout())
    }
}

/// The pod CIDRs of the node compiled for, as its Node's spec.podCIDRs (the daemon reads them
/// from the API).
struct PodCIDROptions: ParsableArguments {
    @Option(
        name: .customLong("pod-cidr"),
        help: ArgumentHelp(
            "A pod CIDR of the node (repeatable): forwarded traffic to and from its addresses that are no known pod of the node is dropped.",
            discussion: "As `picket daemon` does with its Node's spec.podCIDRs (--block-unknown-pod-ips): a new pod is not reachable, and cannot reach anything, before Picket knows it.",
            valueName: "cidr"))
    var podCIDRs: [String] = []

    func validate() throws {
        for text in podCIDRs where CIDR(text) == nil {
            throw ValidationError("--pod-cidr: '\(text)' is not a CIDR (e.g. 10.244.1.0/24)")
        }
    }

    /// `options` with these CIDRs.
    func applied(to options: CompileOptions) -> CompileOptions {
        var options = options
        options.podCIDRs = podCIDRs.compactMap { CIDR($0) }
        return options
    }
}

/// Writes a ruleset's warnings to stderr.
func report(warnings ruleset: Ruleset) {
    for warning in ruleset.warnings { printError("picket: warning: \(warning)") }
}
