// Support for the executor's kernel tests: scratch network namespaces, the host's tools run
// into them with `ip netns exec`, a kernel decorator that records what the executor wrote, the
// kernel's state read back independently of the executor's own parsers, and input builders.
//
// Threads. The executor acts on the network namespace of the calling thread, so every executor
// call runs on a dedicated thread inside the scratch namespace (IPSetKit's `onThread`); Swift
// Testing's `#expect` needs the test's task, so those closures only return values, and every
// check happens back on the test's task. Tools are run from the test's task (host namespace)
// with `ip netns exec NAME ...`.

import Executor
import Foundation
import Glibc
import IPSetKit
import KubeModel
import PolicyCompiler
import Synchronization
import Testing

// MARK: - Skipping

/// Why the kernel tests cannot run here, or nil when they can.
private let kernelProblem: String? = {
    if geteuid() != 0 { return "needs root (network namespaces, iptables, ipset)" }
    for tool in ["/usr/sbin/ip", "/usr/sbin/ipset", "/usr/sbin/iptables-save", "/usr/sbin/ip6tables-save"]
    where !FileManager.default.isExecutableFile(atPath: tool) {
        return "\(tool) is missing (install iproute2, ipset, iptables)"
    }
    return nil
}()

/// Whether the executor's kernel tests can run here. The first time it is asked and they cannot,
/// it prints a banner nobody can miss; the tests themselves are then reported as skipped (never
/// as passed) through `kernelOnly`.
let kernelReady: Bool = {
    guard let problem = kernelProblem else { return true }
    print("""
        ************************************************************************
        ExecutorTests kernel tests SKIPPED: \(problem).
        Applying rules in a real kernel is NOT being tested. Run `sudo swift test --filter ExecutorTests`.
        ************************************************************************
        """)
    return false
}()

/// The trait of every test (or suite) that needs a real kernel: skipped, and reported as such,
/// where `kernelReady` is false.
let kernelOnly = ConditionTrait.enabled(if: kernelReady, "needs root, iproute2, ipset and iptables")

/// Whether the kernel tests can run here (for code reached from a test not marked `kernelOnly`);
/// prints a line nobody can miss when they cannot.
func kernelTestsCanRun(_ test: String = #function) -> Bool {
    if let problem = kernelProblem {
        print("!!!!!!!! SKIPPED ExecutorTests.\(test): \(problem) !!!!!!!!")
        return false
    }
    return true
}

// MARK: - Commands

/// What a finished command printed, and how it ended.
struct CommandResult: CustomStringConvertible {
    /// Exit status; 128 + signal when killed (at its deadline, for instance).
    var status: Int32
    /// Standard output.
    var stdout: String
    /// Standard error.
    var stderr: String

    var description: String { "exit \(status)\n--- stdout ---\n\(stdout)--- stderr ---\n\(stderr)" }
}

/// A command the tests needed that failed.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
}

/// Runs `executable ARGUMENTS` from the test's own (host) namespace and waits at most `timeout`
/// seconds (then kills it). Both output pipes are drained concurrently, so no size can block.
func runCommand(_ executable: String, _ arguments: [String], input: String? = nil, timeout: Double = 30) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe(), errors = Pipe(), standardInput = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = input == nil ? FileHandle.nullDevice : standardInput
    try process.run()
    // Readers on threads of their own: blocking reads must not hold the (2-thread) shared pool.
    let group = DispatchGroup()
    let outBox = OutputBox(), errBox = OutputBox()
    for (pipe, box) in [(output, outBox), (errors, errBox)] {
        group.enter()
        Thread {
            box.data = pipe.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }.start()
    }
    if let input {
        standardInput.fileHandleForWriting.write(Data(input.utf8))
        try standardInput.fileHandleForWriting.close()
    }
    let pid = process.processIdentifier
    let finished = group.wait(timeout: .now() + timeout)
    if finished == .timedOut {
        kill(pid, SIGKILL)  // our own child, by its id
        if group.wait(timeout: .now() + 5) == .timedOut {
            print("ExecutorTests: \(executable) \(arguments) still holds its output open after SIGKILL")
        }
    }
    process.waitUntilExit()
    return CommandResult(
        status: process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus,
        stdout: String(decoding: outBox.data, as: UTF8.self),
        stderr: String(decoding: errBox.data, as: UTF8.self))
}

/// What a reader thread collected; read only after the thread left the group.
private final class OutputBox: @unchecked Sendable {
    // @unchecked: written by one reader thread before `group.leave()`, read after `group.wait`.
    var data = Data()
}

/// Runs a command and returns its output; throws with its stderr when it fails.
@discardableResult
func checked(_ executable: String, _ arguments: [String], input: String? = nil) throws -> String {
    let result = try runCommand(executable, arguments, input: input)
    guard result.status == 0 else {
        throw CommandFailure(description: "\(executable) \(arguments.joined(separator: " ")) failed: \(result)")
    }
    return result.stdout
}

// MARK: - Scratch namespaces

/// Numbers the scratch namespaces of this process.
private let namespaceCounter = Atomic<Int>(0)

/// Serialises the executor calls of the tests of this process, so that `ConcurrencyTests`, which
/// races two executors of its own, can tell that every iptables-restore child it sees is its own.
let executorCalls = NSLock()

/// A network namespace of one test: `pkt-exec-<pid>-<n>`, deleted by `withScratchNamespace`.
struct ScratchNamespace {
    /// The `ip netns` name.
    let name: String

    /// `/run/netns/NAME`.
    var path: String { "/run/netns/\(name)" }

    /// Runs `body` on a thread inside the namespace (the executor's calls act there), one
    /// executor call of this process at a time (see `executorCalls`).
    @discardableResult
    func inside<T>(_ body: () throws -> T) throws -> T {
        executorCalls.lock()
        defer { executorCalls.unlock() }
        return try onThread(inNetworkNamespaceAt: path, body)
    }

    /// `ip netns exec NAME tool arguments...`, from the test's task; the result whatever it is.
    func exec(_ tool: String, _ arguments: [String], input: String? = nil) throws -> CommandResult {
        try runCommand("/usr/sbin/ip", ["netns", "exec", name, tool] + arguments, input: input)
    }

    /// `ip netns exec NAME tool arguments...`; throws when it fails.
    @discardableResult
    func run(_ tool: String, _ arguments: String...) throws -> String {
        let result = try exec(tool, arguments)
        guard result.status == 0 else {
            throw CommandFailure(description: "in \(name): \(tool) \(arguments.joined(separator: " ")) failed: \(result)")
        }
        return result.stdout
    }

    /// `iptables-save -t TABLE` (or ip6tables-save) without comments and counters.
    func save(_ family: IPAddress.Family, _ table: TableName = .filter) throws -> String {
        let text = try run(family == .v4 ? "iptables-save" : "ip6tables-save", "-t", table.rawValue)
        return normalizedTableSave(text)
    }

    /// Both families' `save` of both tables Picket writes, for before/after comparisons.
    func saveBoth() throws -> String {
        var text = ""
        for family in IPAddress.Family.allCases {
            for table in TableName.allCases { text += try "# \(family) \(table.rawValue)\n" + save(family, table) }
        }
        return text
    }

    /// The kernel's mangle (or filter) table of one family as the tests read it.
    func table(_ family: IPAddress.Family, _ table: TableName = .mangle) throws -> SavedTable {
        SavedTable(parsing: try save(family, table))
    }

    /// `ipset save`, normalised (see `normalizedSetSave`).
    func setSave() throws -> String {
        normalizedSetSave(try run("ipset", "save"))
    }

    /// Picket's sets (`picket-*`) as `ipset save` shows them.
    func picketSets() throws -> [String: SavedSet] {
        savedSets(try run("ipset", "save")).filter { $0.key.hasPrefix(Names.setPrefix) }
    }

    /// `ipset list -n`, sorted.
    func setNames() throws -> [String] {
        try run("ipset", "list", "-n").split(separator: "\n").map(String.init).sorted()
    }
}

/// Creates a scratch namespace, runs `body` with it, and deletes it afterwards, also when
/// `body` throws. Returns without running `body` (after a loud line) when not root.
func withScratchNamespace(_ test: String = #function, _ body: (ScratchNamespace) throws -> Void) throws {
    guard kernelTestsCanRun(test) else { return }
    let number = namespaceCounter.wrappingAdd(1, ordering: .relaxed).newValue
    let namespace = ScratchNamespace(name: "pkt-exec-\(getpid())-\(number)")
    try checked("/usr/sbin/ip", ["netns", "add", namespace.name])
    defer {
        do {
            try checked("/usr/sbin/ip", ["netns", "delete", namespace.name])
        } catch {
            Issue.record(error, "could not delete the scratch namespace \(namespace.name)")
        }
    }
    try body(namespace)
}

// MARK: - Reading the kernel back (independently of the executor's parsers)

/// Drops `#` lines and chain counters (`[packets:bytes]`) from iptables-save text.
func normalizedTableSave(_ text: String) -> String {
    var lines: [String] = []
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        if line.hasPrefix(":"), let bracket = line.lastIndex(of: "[") {
            lines.append(String(line[..<bracket]).trimmingCharacters(in: .whitespaces))
        } else {
            lines.append(String(line))
        }
    }
    return lines.joined(separator: "\n") + "\n"
}

/// One filter table as iptables-save prints it: declared chains and their rules in order.
struct SavedTable: Equatable {
    /// Chain names in declaration order.
    var chains: [String] = []
    /// Rules by chain (text after `-A CHAIN `), in order; every declared chain has an entry.
    var rules: [String: [String]] = [:]

    /// Parses normalised iptables-save text of the filter table.
    init(parsing text: String) {
        for line in text.split(separator: "\n") {
            if line.hasPrefix(":") {
                let name = String(line.dropFirst().split(separator: " ")[0])
                chains.append(name)
                rules[name] = rules[name] ?? []
            } else if line.hasPrefix("-A ") {
                let words = line.dropFirst(3)
                let space = words.firstIndex(of: " ") ?? words.endIndex
                let chain = String(words[..<space])
                // iptables-save quotes a connlabel's value (`--label "127"`), which restore reads
                // as the word the compiler wrote.
                let rule = space == words.endIndex ? "" : String(words[words.index(after: space)...])
                rules[chain, default: []].append(SavedTable.unquotingLabels(rule))
            }
        }
    }

    /// `rule` with each `--label "N"` written `--label N`.
    static func unquotingLabels(_ rule: String) -> String {
        guard rule.contains("--label \"") else { return rule }
        var words = rule.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        for i in words.indices.dropFirst() where words[i - 1] == "--label" && words[i].count > 2 && words[i].hasPrefix("\"") && words[i].hasSuffix("\"") {
            words[i] = String(words[i].dropFirst().dropLast())
        }
        return words.joined(separator: " ")
    }

    /// Picket's chains (`PICKET-*`) and their rules.
    var picketChains: [String: [String]] { rules.filter { $0.key.hasPrefix(Names.chainPrefix) } }

    /// Rules of a chain (empty when absent).
    func rules(of chain: String) -> [String] { rules[chain] ?? [] }

    /// Rules of a chain that jump or go to a Picket chain.
    func picketJumps(in chain: String) -> [String] {
        rules(of: chain).filter { rule in
            let words = rule.split(separator: " ")
            return zip(words, words.dropFirst()).contains { ($0 == "-j" || $0 == "-g") && $1.hasPrefix(Names.chainPrefix) }
        }
    }
}

/// One set as `ipset save` shows it: its type and family, and members.
struct SavedSet: Equatable, CustomStringConvertible {
    /// `hash:ip`, ...
    var type: String
    /// `inet` or `inet6`.
    var family: String
    /// Members as printed after `add NAME `.
    var members: Set<String>

    var description: String { "\(type) \(family) \(members.sorted())" }
}

/// Sets of `ipset save` text by name.
func savedSets(_ text: String) -> [String: SavedSet] {
    var sets: [String: SavedSet] = [:]
    for line in text.split(separator: "\n") {
        let words = line.split(separator: " ", maxSplits: 2).map(String.init)
        guard words.count == 3 else { continue }
        if words[0] == "create" {
            let options = words[2].split(separator: " ").map(String.init)
            let family = options.firstIndex(of: "family").map { options[$0 + 1] } ?? "inet"
            sets[words[1]] = SavedSet(type: options[0], family: family, members: [])
        } else if words[0] == "add" {
            sets[words[1]]?.members.insert(words[2])
        }
    }
    return sets
}

/// `ipset save` text in a canonical order, `initval` (random per set) dropped.
func normalizedSetSave(_ text: String) -> String {
    var creates: [String] = []
    var adds: [String] = []
    for line in text.split(separator: "\n") {
        var words = line.split(separator: " ").map(String.init)
        if let i = words.firstIndex(of: "initval"), i + 1 < words.count { words.removeSubrange(i...(i + 1)) }
        if words.first == "create" { creates.append(words.joined(separator: " ")) } else { adds.append(words.joined(separator: " ")) }
    }
    return (creates.sorted() + adds.sorted()).joined(separator: "\n") + "\n"
}

// MARK: - What a compiled ruleset says the kernel must hold

/// Picket's chains of one family and table as the compiler wrote them (empty when the family is absent).
func compiledChains(_ ruleset: Ruleset, _ family: IPAddress.Family, _ tableName: TableName = .mangle) -> [String: [String]] {
    guard let table = ruleset.tables.first(where: { $0.family == family }) else { return [:] }
    return Dictionary(uniqueKeysWithValues: table.chains.filter { $0.table == tableName }.map { ($0.name, $0.ruleTexts) })
}

/// The hooks of one built-in chain in one family and table, in order.
func compiledHooks(_ ruleset: Ruleset, _ family: IPAddress.Family, _ builtin: String, _ tableName: TableName = .mangle) -> [String] {
    guard let table = ruleset.tables.first(where: { $0.family == family }) else { return [] }
    return table.hooks.filter { $0.builtin == builtin && $0.table == tableName }.map(\.ruleText)
}

/// `ruleset` numbered as the namespace's dispatch sets number its groups (an apply keeps the
/// numbers pods carry, so they may differ from a fresh compile's).
func numberedAsKernel(_ ruleset: Ruleset, in namespace: ScratchNamespace) throws -> Ruleset {
    var state = NodeState()
    state.sets = KernelText.parseSets(try namespace.run("ipset", "save"))
    return ruleset.renumbered(keeping: state.carriedNumbers(ruleset.marks))
}

/// Picket's sets as the compiler wrote them.
func compiledSets(_ ruleset: Ruleset) -> [String: SavedSet] {
    Dictionary(uniqueKeysWithValues: ruleset.sets.map {
        ($0.name, SavedSet(type: $0.kind.rawValue, family: $0.family == .v4 ? "inet" : "inet6", members: Set($0.memberTexts)))
    })
}

/// Checks that the namespace holds exactly `ruleset` (Picket's part): PICKET-* chains of both
/// families equal the compiled ones, FORWARD and INPUT start with exactly the compiled hooks and
/// have no other jump into Picket's chains, OUTPUT has none, and the picket-* sets equal the
/// compiled ones. Read back with iptables-save and ipset save.
func expectKernelHolds(
    _ ruleset: Ruleset, in namespace: ScratchNamespace, _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let ruleset = try numberedAsKernel(ruleset, in: namespace)
    for family in IPAddress.Family.allCases {
        for tableName in TableName.allCases {
            let table = try namespace.table(family, tableName)
            #expect(table.picketChains == compiledChains(ruleset, family, tableName), "\(family) \(tableName) chains \(comment?.rawValue ?? "")", sourceLocation: sourceLocation)
            for builtin in ["FORWARD", "INPUT", "OUTPUT"] {
                let hooks = compiledHooks(ruleset, family, builtin, tableName)
                #expect(Array(table.rules(of: builtin).prefix(hooks.count)) == hooks, "\(family) \(tableName) \(builtin) starts with the hooks \(comment?.rawValue ?? "")", sourceLocation: sourceLocation)
                #expect(table.picketJumps(in: builtin) == hooks, "\(family) \(tableName) \(builtin): one jump per hook \(comment?.rawValue ?? "")", sourceLocation: sourceLocation)
            }
        }
    }
    #expect(try namespace.picketSets() == compiledSets(ruleset), "sets \(comment?.rawValue ?? "")", sourceLocation: sourceLocation)
}

// MARK: - A kernel that records what the executor asked of it

/// One call the executor made.
enum KernelCall: Equatable, CustomStringConvertible {
    case saveSets
    case saveTable(IPAddress.Family)
    case restoreSets([String])
    case restoreTable(IPAddress.Family, String)
    case recheckConntrack(Set<IPAddress>)
    case fingerprint

    /// Whether the call can change the kernel (an empty `restoreSets` cannot).
    var isWrite: Bool {
        switch self {
        case .saveSets, .saveTable, .fingerprint: false
        case .restoreSets(let lines): !lines.isEmpty
        case .restoreTable, .recheckConntrack: true
        }
    }

    var description: String {
        switch self {
        case .saveSets: "saveSets"
        case .saveTable(let family): "saveTable(\(family))"
        case .restoreSets(let lines): "restoreSets(\(lines))"
        case .restoreTable(let family, let text): "restoreTable(\(family), \(text))"
        case .recheckConntrack(let addresses): "recheckConntrack(\(addresses.sorted()))"
        case .fingerprint: "fingerprint"
        }
    }
}

/// The calls of a `CountingKernel`, shared by its copies. Used from one thread at a time: the
/// namespace thread while an executor call runs, the test's task after it was joined.
final class KernelLog: @unchecked Sendable {
    // @unchecked: written on a namespace thread, read on the test's task only after that thread
    // was joined (pthread_join orders the accesses).
    /// Every call, in order.
    var calls: [KernelCall] = []
    /// A fault to inject: when it returns an error for a call, the call throws it instead of
    /// reaching the kernel (a step the kernel refused, a netlink failure).
    var fault: ((KernelCall) -> ApplyError?)?
    /// How the saved tables are printed back to the executor: the kernel's text as this
    /// machine's iptables prints it when nil, or rewritten as another build might print it.
    var printing: ((String) -> String)?

    /// Forgets the calls so far.
    func reset() { calls = [] }

    /// Calls that could change the kernel.
    var writes: [KernelCall] { calls.filter(\.isWrite) }
    /// Calls that only read.
    var reads: [KernelCall] { calls.filter { !$0.isWrite && !$0.isEmptyRestore } }
    /// The line lists of non-empty `restoreSets` calls.
    var setRestores: [[String]] {
        calls.compactMap { if case .restoreSets(let lines) = $0, !lines.isEmpty { lines } else { nil } }
    }
    /// The texts of `restoreTable` calls.
    var tableRestores: [(family: IPAddress.Family, text: String)] {
        calls.compactMap { if case .restoreTable(let family, let text) = $0 { (family, text) } else { nil } }
    }
    /// The address sets of `recheckConntrack` calls.
    var conntrackRechecks: [Set<IPAddress>] {
        calls.compactMap { if case .recheckConntrack(let addresses) = $0 { addresses } else { nil } }
    }
}

extension KernelCall {
    var isEmptyRestore: Bool { if case .restoreSets(let lines) = self { lines.isEmpty } else { false } }
}

/// The real kernel (`SystemKernel`), recording every call before passing it on.
struct CountingKernel: KernelAccess {
    /// The kernel doing the work.
    let base = SystemKernel()
    /// What was called.
    let log = KernelLog()

    /// Logs a call, then throws the injected fault for it, if any.
    private func record(_ call: KernelCall) throws(ApplyError) {
        log.calls.append(call)
        if let error = log.fault?(call) { throw error }
    }

    func saveSets() throws(ApplyError) -> String {
        try record(.saveSets)
        return try base.saveSets()
    }

    func restoreSets(_ lines: [String]) throws(ApplyError) {
        try record(.restoreSets(lines))
        try base.restoreSets(lines)
    }

    func saveTable(_ family: IPAddress.Family) throws(ApplyError) -> String {
        try record(.saveTable(family))
        let text = try base.saveTable(family)
        return log.printing?(text) ?? text
    }

    func restoreTable(_ family: IPAddress.Family, _ text: String) throws(ApplyError) {
        try record(.restoreTable(family, text))
        try base.restoreTable(family, text)
    }

    func recheckConntrack(_ addresses: Set<IPAddress>, mark: UInt32, clearingLabel label: Int) throws(ApplyError) -> Int {
        try record(.recheckConntrack(addresses))
        return try base.recheckConntrack(addresses, mark: mark, clearingLabel: label)
    }

    func fingerprint() throws(ApplyError) -> KernelFingerprint? {
        try record(.fingerprint)
        return try base.fingerprint()
    }
}

/// An executor over a fresh `CountingKernel`, and the kernel's log.
func countingExecutor(schedule: VerifySchedule = VerifySchedule()) -> (Executor, KernelLog) {
    let kernel = CountingKernel()
    return (Executor(kernel: kernel, schedule: schedule), kernel.log)
}

/// The chains an iptables-restore text declares (`:NAME - [0:0]`), in order.
func declaredChains(_ text: String) -> [String] {
    text.split(separator: "\n").filter { $0.hasPrefix(":") }.map { String($0.dropFirst().split(separator: " ")[0]) }
}

/// Lines of an iptables-restore text that start with `prefix` (`-A `, `-I `, `-D `, `-X `).
func restoreLines(_ text: String, _ prefix: String) -> [String] {
    text.split(separator: "\n").filter { $0.hasPrefix(prefix) }.map(String.init)
}

/// The chain names `-A` lines of an iptables-restore text append to, without repeats, sorted.
func appendedChains(_ text: String) -> [String] {
    Set(restoreLines(text, "-A ").map { String($0.split(separator: " ")[1]) }).sorted()
}

// MARK: - Inputs

/// A pod with defaults (node-a, Running), adjusted by a closure.
func makePod(
    _ namespace: String, _ name: String, node: String = "node-a", ip: String, labels: [String: String] = [:],
    _ tweak: (inout Pod) -> Void = { _ in }
) -> Pod {
    var pod = Pod(namespace: namespace, name: name, labels: labels, nodeName: node, ips: [IPAddress(ip)!])
    tweak(&pod)
    return pod
}

/// A validated policy from a spec built by a closure.
func makePolicy(_ namespace: String, _ name: String, _ tweak: (inout NetworkPolicy.Spec) -> Void = { _ in }) -> Policy {
    var spec = NetworkPolicy.Spec()
    tweak(&spec)
    return Policy(validating: NetworkPolicy(namespace: namespace, name: name, spec: spec))
}

/// `app=<value>` selector.
func app(_ value: String) -> LabelSelector { LabelSelector(matchLabels: ["app": value]) }

/// A TCP port entry.
func tcp(_ port: Int) -> NetworkPolicy.Port { NetworkPolicy.Port(protocol: "TCP", port: .number(port)) }

/// The shop: three local pods on node-a (web, api, db), one remote client on node-b.
///
/// - `web-allow-client`: web admits client on TCP 80 (a peer set holding client's address).
/// - `db-allow-api`: db admits api on TCP 5432.
/// - `api-egress`: api may reach db on TCP 5432, and 10.0.0.0/8 except 10.96.0.0/12 on UDP 53.
struct Shop {
    var pods: [Pod] = [
        makePod("shop", "web", ip: "10.244.1.2", labels: ["app": "web"]) {
            $0.ports = [ContainerPort(name: "http", number: 80)]
        },
        makePod("shop", "api", ip: "10.244.1.3", labels: ["app": "api"]),
        makePod("shop", "db", ip: "10.244.1.4", labels: ["app": "db"]),
        makePod("shop", "client", node: "node-b", ip: "10.244.2.5", labels: ["app": "client"]),
    ]
    var policies: [Policy] = [
        makePolicy("shop", "web-allow-client") { spec in
            spec.podSelector = app("web")
            spec.ingress = [.init(peers: [.init(podSelector: app("client"))], ports: [tcp(80)])]
        },
        makePolicy("shop", "db-allow-api") { spec in
            spec.podSelector = app("db")
            spec.ingress = [.init(peers: [.init(podSelector: app("api"))], ports: [tcp(5432)])]
        },
        makePolicy("shop", "api-egress") { spec in
            spec.podSelector = app("api")
            spec.policyTypes = ["Egress"]
            spec.egress = [
                .init(peers: [.init(podSelector: app("db"))], ports: [tcp(5432)]),
                .init(peers: [.init(ipBlock: .init(cidr: "10.0.0.0/8", except: ["10.96.0.0/12"]))],
                      ports: [.init(protocol: "UDP", port: .number(53))]),
            ]
        },
    ]

    /// The shop, adjusted.
    static func with(_ tweak: (inout Shop) -> Void) -> Shop {
        var shop = Shop()
        tweak(&shop)
        return shop
    }

    /// Changes one pod.
    mutating func pod(_ name: String, _ tweak: (inout Pod) -> Void) {
        guard let i = pods.firstIndex(where: { $0.key.name == name }) else {
            Issue.record("no pod \(name) in the shop")
            return
        }
        tweak(&pods[i])
    }

    /// Gives every pod an IPv6 address next to its IPv4 one (fd00:: + the last IPv4 octets).
    mutating func dualStack() {
        for i in pods.indices {
            let v4 = pods[i].ips[0].description.split(separator: ".")
            pods[i].ips.append(IPAddress("fd00:10:244:\(v4[2])::\(v4[3])")!)
        }
    }

    /// What node-a enforces.
    var ruleset: Ruleset { compile(ClusterSnapshot(pods: pods, policies: policies), node: "node-a") }
}

/// `api-allow-web`: api admits web on TCP 8080 (one more policy, with its own chains and sets).
let apiAllowWeb = makePolicy("shop", "api-allow-web") { spec in
    spec.podSelector = app("api")
    spec.ingress = [.init(peers: [.init(podSelector: app("web"))], ports: [tcp(8080)])]
}

/// An object key in the shop.
func shopKey(_ name: String) -> ObjectKey { ObjectKey(namespace: "shop", name: name) }

/// The names of the sets whose members include `member`, sorted.
func sets(of ruleset: Ruleset, holding member: String) -> [String] {
    // A dispatch set's member text goes on with its tag: compare what comes before it.
    ruleset.sets.filter { $0.memberTexts.contains { $0 == member || $0.hasPrefix(member + " ") } }.map(\.name).sorted()
}
