import ConntrackKit
import Foundation
import IPSetKit
import KubeModel
import PolicyCompiler
import Synchronization
import ToolRunner

/// The kernel interfaces the executor uses, injected so that tests and the daemon choose how
/// commands run. Every call acts on the caller's network namespace.
public protocol KernelAccess {
    /// `ipset save` of Picket's sets.
    func saveSets() throws(ApplyError) -> String
    /// Runs `ipset restore` lines; stops at the first failing line.
    func restoreSets(_ lines: [String]) throws(ApplyError)
    /// `iptables-save` (or ip6tables-save) of the tables Picket writes (filter and mangle).
    func saveTable(_ family: IPAddress.Family) throws(ApplyError) -> String
    /// `iptables-restore --noflush --wait` (or ip6tables-restore) of one transaction.
    func restoreTable(_ family: IPAddress.Family, _ text: String) throws(ApplyError)
    /// Sets the re-check bit `mark` on the conntrack entries of these addresses, and clears their
    /// seen label bit `label` (so that the hooks send their next packet to the tagging chain);
    /// returns how many entries changed.
    func recheckConntrack(_ addresses: Set<IPAddress>, mark: UInt32, clearingLabel label: Int) throws(ApplyError) -> Int
    /// A cheap sign of the state of Picket's part of the kernel, equal between two calls only if
    /// nothing was changed in between (see `KernelFingerprint`); nil when this kernel cannot
    /// tell (legacy iptables has no generation counter), and every verify reads back.
    func fingerprint() throws(ApplyError) -> KernelFingerprint?
}

extension KernelAccess {
    /// No fingerprint: every verify reads the kernel back.
    public func fingerprint() throws(ApplyError) -> KernelFingerprint? { nil }
}

/// What a verify compares instead of reading everything back: the nf_tables generation (moved by
/// every committed change of any table in the namespace, by anyone) and the headers of Picket's
/// sets (type, options, the hash's random seed, size in memory, references, number of entries:
/// a set recreated, resized, or with members added or removed shows another header).
public struct KernelFingerprint: Hashable, Sendable {
    /// The nf_tables ruleset generation.
    public var generation: UInt32
    /// `ipset list -terse` of Picket's sets.
    public var setHeaders: String

    /// Creates a fingerprint.
    public init(generation: UInt32, setHeaders: String) {
        self.generation = generation
        self.setHeaders = setHeaders
    }
}

/// Why an apply failed. The message names the step, the tool, and the failing input line with
/// its neighbours, so an operator can see what the kernel refused.
public struct ApplyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The step that failed, e.g. `ipset restore (create sets)` or `iptables-restore (ipv4)`.
    public var step: String
    /// What the tool said.
    public var message: String
    /// The input lines around the failing one (`>` marks it), when known.
    public var context: [String]

    /// Creates an error.
    public init(step: String, message: String, context: [String] = []) {
        self.step = step
        self.message = message
        self.context = context
    }

    public var description: String {
        var text = "\(step): \(message)"
        if !context.isEmpty { text += "\n" + context.joined(separator: "\n") }
        return text
    }

    /// The error for a plan the restore guard refused: nothing was written.
    static func refused(_ step: String, _ violation: RestoreGuard.Violation, _ text: String) -> ApplyError {
        let lines = text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).map { RestoreGuard.printableLine(Substring($0)) }
        return ApplyError(
            step: "\(step) (refused before writing)",
            message: "line \(violation.line) is not one of Picket's (\(violation.reason)); nothing was written",
            context: around(lines, line: violation.line))
    }

    /// Lines `number-2 ... number+2` of `lines` (1-based), the failing one marked.
    static func around(_ lines: [String], line number: Int) -> [String] {
        guard number >= 1 && number <= lines.count else { return [] }
        return (max(1, number - 2)...min(lines.count, number + 2)).map { i in
            (i == number ? "> " : "  ") + "\(i): " + lines[i - 1]
        }
    }
}

/// The real kernel: libipset in-process, iptables-restore/-save as processes, conntrack marks
/// over netlink in-process.
public struct SystemKernel: KernelAccess {
    /// Where the iptables tools live.
    public var toolDirectory: String
    /// How long one iptables tool may run before it is killed and its step fails: a hung
    /// iptables-restore is a failed sync, never a hung daemon. The tools themselves wait at
    /// most 5 s for the xtables lock (`--wait 5`, as kube-proxy passes).
    public var toolTimeout: Double

    /// Uses the tools in `toolDirectory` (default: the first of /usr/sbin, /sbin that has them).
    public init(toolDirectory: String? = nil, toolTimeout: Double = 30) {
        self.toolTimeout = toolTimeout
        self.toolDirectory = toolDirectory
            ?? ["/usr/sbin", "/sbin", "/usr/bin"].first { FileManager.default.isExecutableFile(atPath: "\($0)/iptables-restore") }
            ?? "/usr/sbin"
    }

    public func saveSets() throws(ApplyError) -> String {
        do {
            return try IPSetSession().save(prefix: "picket-")
        } catch {
            throw ApplyError(step: "ipset save", message: error.description)
        }
    }

    public func restoreSets(_ lines: [String]) throws(ApplyError) {
        guard !lines.isEmpty else { return }
        do {
            try IPSetSession().restore(lines.joined(separator: "\n") + "\n")
        } catch {
            throw ApplyError(step: "ipset restore", message: error.description, context: error.line.map { ApplyError.around(lines, line: $0) } ?? [])
        }
    }

    public func saveTable(_ family: IPAddress.Family) throws(ApplyError) -> String {
        let tool = family == .v4 ? "iptables-save" : "ip6tables-save"
        var text = ""
        for table in TableName.allCases {
            let result = run(tool, ["-t", table.rawValue], stdin: nil)
            if result.timedOut { throw timedOut("\(tool) -t \(table.rawValue)") }
            guard result.status == 0 else {
                throw ApplyError(step: "\(tool) -t \(table.rawValue)", message: result.stderr.isEmpty ? "exit status \(result.status)" : result.stderr)
            }
            text += result.stdout
        }
        return text
    }

    public func restoreTable(_ family: IPAddress.Family, _ text: String) throws(ApplyError) {
        let tool = family == .v4 ? "iptables-restore" : "ip6tables-restore"
        let result = run(tool, ["--noflush", "--wait", "5"], stdin: text)
        // A restore commits a table whole or not at all; killed, it may have done either, and the
        // next apply reads back what the kernel holds.
        if result.timedOut { throw timedOut(tool) }
        guard result.status == 0 else {
            let message = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            // Show the failing line and its neighbours. The tools name it as "line 7 failed"
            // (legacy, and nf_tables for some errors), "line 7: CHAIN_DEL failed ..." (nf_tables
            // commit errors) or "Error occurred at line: 7" (nf_tables parse errors).
            var context: [String] = []
            if let range = message.range(of: #"line:? \d+"#, options: .regularExpression),
               let number = Int(message[range].drop { !$0.isNumber }) {
                context = ApplyError.around(text.components(separatedBy: "\n"), line: number)
            }
            throw ApplyError(step: tool, message: message.isEmpty ? "exit status \(result.status)" : message, context: context)
        }
    }

    /// With the nf_tables backend, the ruleset generation and the sets' headers; nil with legacy
    /// iptables (its tables have no generation).
    public func fingerprint() throws(ApplyError) -> KernelFingerprint? {
        guard backend == .nfTables else { return nil }
        let generation: UInt32
        switch RulesetGeneration.current() {
        case .success(let value): generation = value
        case .failure(let error): throw ApplyError(step: "nf_tables generation", message: error.description)
        }
        do {
            return KernelFingerprint(generation: generation, setHeaders: try IPSetSession().headers(prefix: Names.setPrefix))
        } catch {
            throw ApplyError(step: "ipset list -terse", message: error.description)
        }
    }

    /// Which backend the iptables tools in `toolDirectory` drive.
    public var backend: Backend { Self.backends.withLock { known in
        if let backend = known[toolDirectory] { return backend }
        let result = runTool("\(toolDirectory)/iptables", ["-V"], stdin: nil, timeout: toolTimeout)
        let backend: Backend = result.stdout.contains("nf_tables") ? .nfTables : .legacy
        known[toolDirectory] = backend
        return backend
    } }

    /// An iptables backend.
    public enum Backend: Sendable {
        /// iptables-nft: the tables are nf_tables tables, with a generation counter.
        case nfTables
        /// iptables-legacy (x_tables).
        case legacy
    }

    /// Backends by tool directory, asked once per process.
    private static let backends = Mutex<[String: Backend]>([:])

    public func recheckConntrack(_ addresses: Set<IPAddress>, mark: UInt32, clearingLabel label: Int) throws(ApplyError) -> Int {
        guard !addresses.isEmpty else { return 0 }
        do {
            return try Conntrack.markEntries(involving: addresses, mark: mark, mask: mark, clearingLabel: label)
        } catch {
            throw ApplyError(step: "conntrack mark", message: error.description)
        }
    }

    private func run(_ tool: String, _ arguments: [String], stdin: String?) -> ToolResult {
        runTool("\(toolDirectory)/\(tool)", arguments, stdin: stdin, timeout: toolTimeout)
    }

    private func timedOut(_ step: String) -> ApplyError {
        ApplyError(step: step, message: "still running after \(Int(toolTimeout)) s: killed (is the xtables lock held, or the kernel stuck?)")
    }
}
