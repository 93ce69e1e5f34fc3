import Foundation
import KubeModel
import PolicyCompiler

// The benchmark proper: for each cluster size, generate, build the snapshot, compile for node-0,
// render, and load the output into scratch network namespaces; then print one markdown table and
// one README line per size.

/// Command-line options: `--sizes 1k,10k,50k`, `--runs N`, `--apply-runs N`.
struct BenchOptions {
    /// The sizes to run, in the order given.
    var sizes: [ClusterSize] = ClusterSize.all
    /// Compile/snapshot/render runs per size; nil means each size's default (9, 7, 5).
    var runs: Int?
    /// Apply measurements per size, each in a fresh namespace.
    var applyRuns = 3
    /// Run only the decode benchmark (`--decode`).
    var decodeOnly = false
    /// Where the decode benchmark writes its inputs (`--export-json DIR`).
    var exportJSON: String?

    static let usage = """
        usage: picket-bench [--sizes 1k,10k,50k] [--runs N] [--apply-runs N] [--decode] [--export-json DIR]

        Compiles synthetic clusters (1k pods/100 policies, 10k/2k, 50k/10k; 110 pods per node)
        for node-0 and reports snapshot, compile and render times (medians), rules, set members,
        output bytes and peak RSS; as root with ip, ipset and iptables-restore installed it also
        times loading the output into scratch network namespaces. Build with -c release.

          --sizes LIST      comma-separated subset of 1k,10k,50k (default: all three)
          --runs N          timed runs per size for snapshot/compile/render (default: 9, 7, 5)
          --apply-runs N    restores per size, each in a fresh namespace (default: 3; 0 skips)
          --decode          only the decode benchmark: a PodList of 10,000 real-shaped pods (~6 KB
                            each) through Picket's JSON path, JSONDecoder and Yams (a sample), then
                            read + compile of the 10k/2k cluster exported as one JSON List
          --export-json DIR also write the PodList (pods.json) and the cluster as Lists
                            (cluster-lean.json, cluster.json) into DIR, e.g. to time
                            `picket dry-run --node node-0 --from DIR/cluster.json`
        """

    /// Parses the arguments (without the program name), or says what is wrong.
    static func parse(_ arguments: [String]) -> Result<BenchOptions, BenchUsageError> {
        var options = BenchOptions()
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            switch argument {
            case "-h", "--help":
                return .failure(BenchUsageError(message: nil))
            case "--sizes":
                guard let value = rest.popFirst() else { return .failure(BenchUsageError(message: "--sizes needs a value")) }
                var sizes: [ClusterSize] = []
                for label in value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let size = ClusterSize.all.first(where: { $0.label == label.lowercased() }) else {
                        return .failure(BenchUsageError(message: "--sizes: \"\(label)\" is not one of 1k, 10k, 50k"))
                    }
                    sizes.append(size)
                }
                options.sizes = sizes
            case "--decode":
                options.decodeOnly = true
            case "--export-json":
                guard let value = rest.popFirst() else { return .failure(BenchUsageError(message: "--export-json needs a directory")) }
                options.exportJSON = value
            case "--runs", "--apply-runs":
                guard let value = rest.popFirst(), let n = Int(value), n >= (argument == "--runs" ? 1 : 0), n <= 1000 else {
                    return .failure(BenchUsageError(message: "\(argument) needs a whole number (--runs 1...1000, --apply-runs 0...1000)"))
                }
                if argument == "--runs" { options.runs = n } else { options.applyRuns = n }
            default:
                return .failure(BenchUsageError(message: "unknown argument \"\(argument)\""))
            }
        }
        return .success(options)
    }
}

/// A command-line mistake; nil message means `--help`.
struct BenchUsageError: Error {
    var message: String?
}

/// Everything measured for one size.
struct SizeResult {
    var size: ClusterSize
    var runs: Int
    var pods: Int
    var endpoints: Int
    var policies: Int
    var namespaces: Int
    var nodes: Int
    var localPods: Int
    var podsOnNode: Int
    var generate: Duration
    var snapshot: Duration
    var compile: Duration
    var compileMin: Duration
    var compileMax: Duration
    var render: Duration
    var rules: Int
    var members: Int
    var sets: Int
    var chains: Int
    var ipsetBytes: Int
    var iptablesBytes: Int
    var peakRSS: Int?
    var apply: ApplyMedians?
    var applyNote: String?
    /// The rendered files, kept until they are written for the apply step.
    var renderedIPSet: String
    var renderedIPTables: String

    var outputBytes: Int { ipsetBytes + iptablesBytes }
}

/// Medians over the apply runs of one size; `total` is the median of whole runs (ipset then
/// iptables), not the sum of the two medians.
struct ApplyMedians {
    var ipset: Duration
    var iptables: Duration
    var total: Duration
}

/// Runs the benchmark and prints the report.
struct Benchmark {
    let options: BenchOptions
    let clock = ContinuousClock()

    /// The target from the issue for the 10k size.
    static let targetCompile: Duration = .milliseconds(50)
    static let targetShareOfApply = 0.10

    /// Runs every size; returns the process exit status (1 when a restore failed).
    func run() -> Int32 {
        #if DEBUG
        printErr("picket-bench: warning: this is a debug build; build with -c release for meaningful numbers")
        #endif
        if options.decodeOnly {
            return DecodeBench(exportPath: options.exportJSON).run() ? 0 : 1
        }
        let applier: Applier?
        var applySkipped: String? = nil
        if options.applyRuns == 0 {
            applier = nil
            applySkipped = "--apply-runs 0"
        } else {
            switch Applier.make() {
            case .success(let a): applier = a
            case .failure(let error):
                applier = nil
                applySkipped = error.description
            }
        }
        if let applySkipped {
            printLoud("APPLY TIMING SKIPPED: \(applySkipped). Compile figures only; the apply columns say 'skipped'.")
        }

        let workDirectory: URL
        switch makeWorkDirectory() {
        case .success(let url): workDirectory = url
        case .failure(let error):
            printErr("picket-bench: error: \(error)")
            return 1
        }
        defer {
            do {
                try FileManager.default.removeItem(at: workDirectory)
            } catch {
                printErr("picket-bench: warning: could not remove \(workDirectory.path): \(error)")
            }
        }

        // Ctrl-C or SIGTERM mid-run: delete this run's namespaces and files before exiting.
        let interruption = InterruptCleanup(ip: applier?.ip, namespacePrefix: namespacePrefix, directory: workDirectory)
        defer { interruption.cancel() }

        print("picket-bench: node \(SyntheticCluster.benchNode), \(SyntheticCluster.podsPerNode) pods per node, seed 0x\(String(SyntheticCluster.seed, radix: 16)), \(ProcessInfo.processInfo.activeProcessorCount) CPUs, load average \(loadAverage())")
        var spawn: Duration? = nil
        if let applier {
            do {
                spawn = try applier.spawnOverhead(namespace: namespaceName(0), runs: 5)
            } catch {
                printErr("picket-bench: warning: measuring process start-up failed: \(error)")
            }
        }

        var results: [SizeResult] = []
        var namespaceCounter = 1
        for size in options.sizes {
            print("running \(size.label): \(Format.count(size.pods)) pods, \(Format.count(size.policies)) policies ...")
            fflush(nil)
            var result = measure(size, runs: options.runs ?? size.defaultRuns)
            if let applier {
                applyTimings(&result, applier: applier, directory: workDirectory, counter: &namespaceCounter)
            }
            results.append(result)
        }
        printReport(results, applySkipped: applySkipped, spawn: spawn)
        var executorFailed = false
        if applier != nil {
            executorFailed = !executorReport(counter: &namespaceCounter)
        }
        let decodeFailed = !DecodeBench(exportPath: options.exportJSON).run()
        // A failed restore means the compiler emitted something the kernel rejects: fail loudly.
        return results.contains { $0.applyNote != nil } || executorFailed || decodeFailed ? 1 : 0
    }

    /// The executor table: cold apply, no-op re-apply, one-pod and one-policy changes, each
    /// from snapshot to kernel. Returns false when a measurement failed.
    private func executorReport(counter: inout Int) -> Bool {
        print("")
        print("Executor (in-process libipset + iptables-restore --noflush, scratch namespace; each change is compiled, then applied against the last applied state; medians of \(executorRounds * 2)):")
        print("")
        print("| size | rules | set members | cold apply | no-op re-apply | no-op with kernel read-back | one-pod change: compile + apply | one-policy change: compile + apply |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        var ok = true
        for size in options.sizes {
            var generator = ClusterGenerator()
            let cluster = generator.cluster(size)
            counter += 1
            do {
                let f = try ExecutorBench.run(cluster, size: size.label, namespace: namespaceName(counter), rounds: executorRounds)
                print("| \(f.size) | \(Format.count(f.rules)) | \(Format.count(f.members)) | \(Format.ms(f.cold)) | \(Format.ms(f.noopMemory)) | \(Format.ms(f.noopVerify)) | \(Format.ms(f.onePodCompile)) + \(Format.ms(f.onePod)) (\(f.onePodWrites)) | \(Format.ms(f.onePolicyCompile)) + \(Format.ms(f.onePolicy)) (\(f.onePolicyWrites)) |")
            } catch {
                print("| \(size.label) | failed: \(error) |")
                ok = false
            }
            fflush(nil)
        }
        return ok
    }

    /// Change rounds per executor measurement (each round applies a change and its undo).
    private var executorRounds: Int { 5 }

    /// Generation, snapshot, compile and render of one size; apply is separate.
    private func measure(_ size: ClusterSize, runs: Int) -> SizeResult {
        let rssNote = PeakRSS.reset()
        if let rssNote { printErr("picket-bench: warning: peak RSS is cumulative over sizes: \(rssNote)") }

        var generator = ClusterGenerator()
        var cluster: SyntheticCluster? = nil
        let generate = clock.measure { cluster = generator.cluster(size) }
        guard let cluster else { preconditionFailure("generator returned nothing") }
        if cluster.invalidPolicies > 0 {
            printErr("picket-bench: warning: \(cluster.invalidPolicies) generated policies failed validation (generator bug)")
        }

        var snapshotSamples: [Duration] = []
        var snapshot = ClusterSnapshot()
        for _ in 0..<runs {
            snapshotSamples.append(clock.measure {
                snapshot = ClusterSnapshot(namespaces: cluster.namespaces, pods: cluster.pods, policies: cluster.policies)
            })
        }

        let node = SyntheticCluster.benchNode
        var compileSamples: [Duration] = []
        var ruleset: Ruleset? = nil
        var shape: (rules: Int, members: Int)? = nil
        for _ in 0..<runs {
            compileSamples.append(clock.measure { ruleset = compile(snapshot, node: node) })
            // Deterministic output: every run must produce the same ruleset size.
            let now = (ruleset!.ruleCount, ruleset!.memberCount)
            if let shape, shape != now {
                printErr("picket-bench: warning: \(size.label): compile run gave \(now), an earlier one \(shape): nondeterministic output")
            }
            shape = now
        }
        guard let ruleset else { preconditionFailure("no compile run") }
        if ruleset.ipv6 != nil { printErr("picket-bench: warning: unexpected IPv6 table in an IPv4-only cluster") }

        var renderSamples: [Duration] = []
        var ipsetText = ""
        var iptablesText = ""
        for _ in 0..<runs {
            renderSamples.append(clock.measure {
                ipsetText = ruleset.ipsetRestore(node: node)
                iptablesText = ruleset.iptablesRestore(family: .v4, node: node) ?? ""
            })
        }

        let local = localPods(snapshot, node: node).count
        let onNode = cluster.pods.reduce(0) { $0 + ($1.nodeName == node ? 1 : 0) }
        return SizeResult(
            size: size, runs: runs, pods: cluster.pods.count, endpoints: snapshot.endpoints.count,
            policies: snapshot.policies.count, namespaces: snapshot.namespaceNames.count, nodes: cluster.nodeCount,
            localPods: local, podsOnNode: onNode, generate: generate, snapshot: median(snapshotSamples),
            compile: median(compileSamples), compileMin: compileSamples.min()!, compileMax: compileSamples.max()!,
            render: median(renderSamples), rules: ruleset.ruleCount, members: ruleset.memberCount,
            sets: ruleset.sets.count, chains: ruleset.ipv4.chains.count,
            ipsetBytes: ipsetText.utf8.count, iptablesBytes: iptablesText.utf8.count,
            peakRSS: PeakRSS.bytes(), apply: nil, applyNote: nil,
            renderedIPSet: ipsetText, renderedIPTables: iptablesText)
    }

    /// Writes the rendered files and times `options.applyRuns` loads, each in a new namespace.
    private func applyTimings(_ result: inout SizeResult, applier: Applier, directory: URL, counter: inout Int) {
        let ipsetFile = directory.appendingPathComponent("\(result.size.label)-ipset.restore")
        let iptablesFile = directory.appendingPathComponent("\(result.size.label)-iptables.restore")
        do {
            try Data(result.renderedIPSet.utf8).write(to: ipsetFile)
            try Data(result.renderedIPTables.utf8).write(to: iptablesFile)
        } catch {
            result.applyNote = "cannot write restore files: \(error)"
            printErr("picket-bench: error: \(result.size.label): \(result.applyNote!)")
            return
        }
        // The rendered text is on disk now; drop it so it does not count in later sizes' RSS.
        result.renderedIPSet = ""
        result.renderedIPTables = ""
        var samples: [ApplyTiming] = []
        for _ in 0..<options.applyRuns {
            let name = namespaceName(counter)
            counter += 1
            do {
                samples.append(try applier.measure(ipsetFile: ipsetFile, iptablesFile: iptablesFile, namespace: name))
            } catch {
                result.applyNote = "apply failed: \(error)"
                printErr("picket-bench: error: \(result.size.label): \(error)")
                return
            }
        }
        result.apply = ApplyMedians(
            ipset: median(samples.map(\.ipset)), iptables: median(samples.map(\.iptables)), total: median(samples.map(\.total)))
        for file in [ipsetFile, iptablesFile] {
            do {
                try FileManager.default.removeItem(at: file)
            } catch {
                printErr("picket-bench: warning: could not remove \(file.path): \(error)")
            }
        }
    }

    /// The 1-minute load average from /proc/loadavg: other work on the machine skews medians.
    private func loadAverage() -> String {
        do {
            let text = try String(contentsOfFile: "/proc/loadavg", encoding: .utf8)
            return text.split(separator: " ").first.map(String.init) ?? "?"
        } catch {
            return "unknown"
        }
    }

    /// This run's scratch namespaces are `picket-bench-<pid>-<n>`.
    private var namespacePrefix: String { "picket-bench-\(getpid())-" }

    private func namespaceName(_ n: Int) -> String { namespacePrefix + String(n) }

    /// A new, empty directory under the system's temporary directory.
    private func makeWorkDirectory() -> Result<URL, RestoreError> {
        let base = FileManager.default.temporaryDirectory
        var lastError = ""
        for attempt in 0..<100 {
            let url = base.appendingPathComponent("picket-bench-\(getpid())-\(attempt)", isDirectory: true)
            do {
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
                return .success(url)
            } catch {
                lastError = "\(error)"
            }
        }
        return .failure(RestoreError(command: "mkdir \(base.path)/picket-bench-\(getpid())-N", reason: lastError))
    }

    // MARK: - Report

    private func printReport(_ results: [SizeResult], applySkipped: String?, spawn: Duration?) {
        print("")
        print("| size | pods | policies | local pods | snapshot | compile (median) | render | rules | set members | output (ipset + iptables) | peak RSS | ipset restore | iptables-restore | apply total | compile / apply |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results {
            var cells: [String] = [r.size.label, Format.count(r.pods), Format.count(r.policies), Format.count(r.localPods)]
            cells.append(Format.ms(r.snapshot))
            cells.append("\(Format.ms(r.compile)) (n=\(r.runs))")
            cells.append(Format.ms(r.render))
            cells.append(Format.count(r.rules))
            cells.append(Format.count(r.members))
            cells.append("\(Format.bytes(r.outputBytes)) (\(Format.bytes(r.ipsetBytes)) + \(Format.bytes(r.iptablesBytes)))")
            cells.append(r.peakRSS.map(Format.mebibytes) ?? "n/a")
            if let apply = r.apply {
                cells += [Format.ms(apply.ipset), Format.ms(apply.iptables), Format.ms(apply.total), Format.percent(r.compile, of: apply.total)]
            } else {
                let missing = r.applyNote == nil ? "skipped" : "failed"
                cells += [missing, missing, missing, "n/a"]
            }
            print("| " + cells.joined(separator: " | ") + " |")
        }
        print("")
        print("Details:")
        for r in results {
            var line = "- \(r.size.label): \(Format.count(r.namespaces)) namespaces, \(Format.count(r.nodes)) nodes, "
            line += "\(r.podsOnNode) pods on \(SyntheticCluster.benchNode)"
            line += r.podsOnNode == r.localPods ? ", " : " of which \(r.localPods) policy endpoints (the others are completed jobs), "
            line += "\(Format.count(r.endpoints)) policy endpoints; generate \(Format.ms(r.generate)); "
            line += "compile min \(Format.ms(r.compileMin)) max \(Format.ms(r.compileMax)); "
            line += "\(Format.count(r.sets)) sets, \(Format.count(r.chains)) chains"
            if let note = r.applyNote { line += "; apply: \(note)" }
            print(line)
        }
        if let spawn {
            print("- apply times include process start-up: `ip netns exec NS true` takes \(Format.ms(spawn)) (median of 5); restores ran \(options.applyRuns)x per size, each in a fresh namespace (median)")
        }
        if let applySkipped { print("- APPLY TIMING SKIPPED: \(applySkipped)") }

        print("")
        print("README lines:")
        for r in results {
            var line = "- \(r.size.label) pods / \(Format.count(r.policies)) policies, \(r.localPods) pods on the node: "
            line += "compile \(Format.ms(r.compile)) (median of \(r.runs); snapshot \(Format.ms(r.snapshot)), render \(Format.ms(r.render))), "
            line += "\(Format.count(r.rules)) rules, \(Format.count(r.members)) set members, \(Format.bytes(r.outputBytes)) of restore text"
            if let apply = r.apply {
                line += ", loaded in \(Format.ms(apply.total)) (ipset \(Format.ms(apply.ipset)) + iptables-restore \(Format.ms(apply.iptables)))"
                line += ": compile = \(Format.percent(r.compile, of: apply.total)) of apply"
            }
            if let rss = r.peakRSS { line += "; peak RSS \(Format.mebibytes(rss))" }
            print(line + ".")
        }

        if let r = results.first(where: { $0.size.label == "10k" }) {
            print("")
            let fast = r.compile < Benchmark.targetCompile
            var verdict = "Target (10k pods / 2k policies): compile \(Format.ms(r.compile)) < 50 ms: \(fast ? "MET" : "MISSED")"
            if let apply = r.apply {
                let share = r.compile.milliseconds / apply.total.milliseconds
                verdict += "; compile \(Format.percent(r.compile, of: apply.total)) of apply < 10%: \(share < Benchmark.targetShareOfApply ? "MET" : "MISSED")"
            } else {
                verdict += "; share of apply: not measured (apply timing skipped or failed)"
            }
            print(verdict)
        }
    }

    private func printLoud(_ message: String) {
        let bar = String(repeating: "!", count: 78)
        print(bar)
        print("!! " + message)
        print(bar)
        printErr("picket-bench: " + message)
    }
}

/// A line on standard error.
func printErr(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
