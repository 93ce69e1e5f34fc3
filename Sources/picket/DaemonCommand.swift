import ArgumentParser
import Daemon
import Executor
import Foundation
import KubeClient
import KubeModel
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// `picket daemon`: keep this node enforcing the cluster's policies, event-driven.
struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run on a node: watch the cluster and keep this node's rules enforcing its policies.",
        discussion: """
            Lists and watches Pods, Namespaces and NetworkPolicies (all namespaces) and this node's \
            Node, waits until every list has completed (--cache-sync-timeout, then exits 1 naming \
            what is missing), and from then on keeps the kernel enforcing what the cluster compiles \
            to for this node: every change is applied within milliseconds (bursts coalesce), pod \
            churn as set members only, and every --iptables-sync-period the node is verified and \
            whatever drifted is repaired. With the nf_tables backend a verify that finds the ruleset \
            generation and the sets' headers as Picket left them skips reading the kernel back (a \
            full read-back still runs at least every 5 minutes); with legacy iptables every verify \
            reads back. Rules of a previous run stay in force until replaced.

            The node is --hostname-override, else $NODE_NAME, else the host name. The API server: \
            --kubeconfig (and --context); without it $KUBECONFIG, then the in-cluster service \
            account, then ~/.kube/config.

            /healthz on --health-port: 200 while every watch is healthy and the last sync \
            succeeded recently, else 503 with the reasons. /metrics (Prometheus text) on \
            --metrics-port (the same server when the ports are equal).

            SIGTERM or SIGINT stops within a few seconds and leaves the rules in force (`picket \
            cleanup` removes them). If the API server goes away the rules stay, the watches retry \
            with backoff, and /healthz says why.

            kube-router's --run-firewall=true, --run-router=false and --run-service-proxy=false \
            are accepted (they describe what Picket does) and ignored with a note.
            """)

    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(help: ArgumentHelp("The kubeconfig to use (default: $KUBECONFIG, then in-cluster, then ~/.kube/config).", valueName: "file"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("The kubeconfig context (default: its current context).", valueName: "name"))
    var context: String?

    @Option(help: ArgumentHelp("This node's name (default: $NODE_NAME, else the host name).", valueName: "node"))
    var hostnameOverride: String?

    @Option(help: ArgumentHelp("How often the node is verified and repaired (Go duration: 1s, 5m, 1h30m).", valueName: "duration"))
    var iptablesSyncPeriod = GoDuration(.seconds(300), written: "5m")

    @Option(help: ArgumentHelp("How long start-up waits for the first lists (Go duration).", valueName: "duration"))
    var cacheSyncTimeout = GoDuration(.seconds(300), written: "5m")

    @Option(help: ArgumentHelp("The least time between two syncs: events within it coalesce (Go duration).", valueName: "duration"))
    var minSyncInterval = GoDuration(.milliseconds(20), written: "20ms")

    @Option(help: ArgumentHelp("The port of /healthz (all addresses: the kubelet probes it).", valueName: "port"))
    var healthPort = 20244

    @Option(help: ArgumentHelp("The port of /metrics.", valueName: "port"))
    var metricsPort = 20244

    @Option(help: ArgumentHelp("The IPv4 address /healthz and /metrics listen on.", valueName: "address"))
    var statusAddress = "0.0.0.0"

    @Option(help: ArgumentHelp(
        "Let no forwarded traffic reach or leave an address of this node's pod CIDRs that is not a known pod yet (true|false).",
        valueName: "bool"))
    var blockUnknownPodIps = true

    @Option(help: "Log lines as text or json.")
    var logFormat: LogFormat = .text

    @Option(help: ArgumentHelp("The least level logged: trace, debug, info, notice, warning, error, critical.", valueName: "level"))
    var logLevel: String = "info"

    @OptionGroup var marks: MarkOptions

    @Option(help: ArgumentHelp(
        "Apply the rules in this network namespace (e.g. /run/netns/NAME) instead of this process's; the API is still reached from this one. For test clusters and demos.",
        valueName: "path"))
    var netns: String?

    @Option(name: .customLong("run-firewall"), help: .hidden) var runFirewall: Bool?
    @Option(name: .customLong("run-router"), help: .hidden) var runRouter: Bool?
    @Option(name: .customLong("run-service-proxy"), help: .hidden) var runServiceProxy: Bool?

    func validate() throws {
        if runFirewall == false { throw ValidationError("--run-firewall=false: Picket is a firewall only; there is nothing else to run") }
        if runRouter == true { throw ValidationError("--run-router=true: Picket does not route pod traffic; keep your CNI for that") }
        if runServiceProxy == true { throw ValidationError("--run-service-proxy=true: Picket is not a service proxy; keep kube-proxy for that") }
        for (name, port) in [("--health-port", healthPort), ("--metrics-port", metricsPort)] where !(1...65535).contains(port) {
            throw ValidationError("\(name): \(port) is not a port (1-65535)")
        }
        if Logger.Level(rawValue: logLevel) == nil { throw ValidationError("--log-level: '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical") }
        if iptablesSyncPeriod.duration < .milliseconds(100) { throw ValidationError("--iptables-sync-period must be at least 100ms") }
    }

    /// The node name: the flag, else NODE_NAME, else the host name.
    func nodeName() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        let (name, source) =
            if let hostnameOverride { (hostnameOverride, "--hostname-override") }
            else if let value = environment["NODE_NAME"], !value.isEmpty { (value, "NODE_NAME") }
            else { (ProcessInfo.processInfo.hostName.lowercased(), "the host name") }
        try checkNodeName(name, option: source)
        return name
    }

    func run() async throws {
        let format = logFormat
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "picket")
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10),
        ]
        MetricsSystem.bootstrap(factory)

        for (flag, value) in [("--run-firewall", runFirewall), ("--run-router", runRouter), ("--run-service-proxy", runServiceProxy)] {
            if let value { logger.notice("accepted for kube-router compatibility and ignored", metadata: ["flag": "\(flag)=\(value)"]) }
        }
        let node = try nodeName()
        let connection: ClusterConnection
        do {
            connection = try ConnectionResolver.resolve(kubeconfig: kubeconfig, context: context, environment: ProcessInfo.processInfo.environment)
        } catch {
            printError("picket: error: \(error)")
            throw ExitCode(2)
        }
        var options = AgentOptions(node: node)
        options.cacheSyncTimeout = cacheSyncTimeout.duration
        options.sync.verifyPeriod = iptablesSyncPeriod.duration
        options.sync.minInterval = minSyncInterval.duration
        options.sync.compile = marks.compileOptions()
        options.sync.blockUnknownPodIPs = blockUnknownPodIps
        options.sync.networkNamespace = netns
        let client = APIClient(connection: connection, userAgent: "picket/\(Picket.configuration.version) (\(node))")
        let agent = NodeAgent(client: client, executor: Executor(kernel: SystemKernel(), schedule: options.sync.verifySchedule), options: options, logger: logger)

        let metrics: @Sendable () -> StatusResponse = {
            StatusResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: registry.emitToString())
        }
        var servers: [StatusServer] = []
        do {
            if healthPort == metricsPort {
                servers.append(try StatusServer(address: statusAddress, port: healthPort, routes: ["/healthz": agent.health, "/metrics": metrics]))
            } else {
                servers.append(try StatusServer(address: statusAddress, port: healthPort, routes: ["/healthz": agent.health]))
                servers.append(try StatusServer(address: statusAddress, port: metricsPort, routes: ["/metrics": metrics]))
            }
        } catch {
            printError("picket: error: \(error)")
            throw ExitCode(1)
        }
        logger.info(
            "starting", metadata: [
                "node": "\(node)", "server": "\(connection.server)", "from": "\(connection.origin)",
                "iptables_sync_period": "\(iptablesSyncPeriod)", "health_port": "\(healthPort)", "metrics_port": "\(metricsPort)",
                "block_unknown_pod_ips": "\(blockUnknownPodIps)",
            ])
        let service = AgentService(agent: agent, servers: servers, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let error as AgentError {
            logger.critical("start-up failed", metadata: ["error": "\(error)"])
            printError("picket: error: \(error)")
            throw ExitCode(1)
        }
        logger.info("stopped; the rules stay in force")
    }
}

/// The agent as a service: informers and status servers first, then the sync loop once the
/// caches are synced; on graceful shutdown everything stops and the kernel keeps the rules.
struct AgentService: Service {
    let agent: NodeAgent
    let servers: [StatusServer]
    let logger: Logger

    func run() async throws {
        for server in servers { server.start() }
        agent.startInformers()
        try await withGracefulShutdownHandler {
            try await onThread { try agent.waitForCaches() }
            guard !Task.isShuttingDownGracefully else { return }
            logger.info("caches synced", metadata: ["objects": "\(agent.store.counts.map { "\($0.key.rawValue)=\($0.value)" }.sorted().joined(separator: " "))"])
            agent.startSyncing()
            try? await gracefulShutdown()
        } onGracefulShutdown: {
            agent.stop()
        }
        agent.stop()
        for server in servers { server.stop() }
    }
}

/// Runs blocking work on a thread of its own (never on the two-thread concurrency pool).
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            do {
                continuation.resume(returning: try body())
            } catch {
                continuation.resume(throwing: error)
            }
        }
        thread.start()
    }
}
