import ArgumentParser
import KubeModel
import PolicyEvaluator

/// `picket explain`: the verdict on one flow and the policies and rules behind it.
struct Explain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explain whether a flow is allowed, and by which policies and rules.",
        discussion: """
            SOURCE and DESTINATION are pods as namespace/name, or IP addresses (a pod's address \
            names the pod; any other address is an endpoint outside the cluster). TRAFFIC is \
            PORT[/PROTO] with PROTO tcp (default), udp or sctp, or `icmp`.

            The cluster comes from manifests (--from) or a live API server (--kubeconfig, --context). \
            The answer comes from Picket's policy evaluator, an implementation of the NetworkPolicy \
            API independent of the rule compiler. Exit status: 0 allowed, 1 denied, 2 invalid input.
            """)

    @OptionGroup var inputs: InputOptions

    @Option(help: ArgumentHelp("Address family when both ends are pods with both (4 or 6; default: the pods' first).", valueName: "4|6"))
    var family: Int?

    @Argument(help: "The source: namespace/name or an IP address.")
    var source: String

    @Argument(help: "The destination: namespace/name or an IP address.")
    var destination: String

    @Argument(help: "PORT[/PROTO] (e.g. 80, 53/udp) or icmp.")
    var traffic: String

    func validate() throws {
        if let family, family != 4 && family != 6 { throw ValidationError("--family must be 4 or 6") }
        _ = try parsedTraffic()
    }

    func parsedTraffic() throws -> Flow.Traffic {
        if traffic.lowercased() == "icmp" { return .icmp }
        let parts = traffic.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let port = Int(parts[0]), (1...65535).contains(port) else {
            throw ValidationError("TRAFFIC must be PORT[/PROTO] with a port from 1 to 65535, or icmp: \"\(traffic)\"")
        }
        guard parts.count == 2 else { return .port(.tcp, port) }
        guard let proto = TransportProtocol(rawValue: parts[1].uppercased()) else {
            throw ValidationError("protocol must be tcp, udp or sctp: \"\(parts[1])\"")
        }
        return .port(proto, port)
    }

    func run() throws {
        let objects = try inputs.load()
        if report(objects.issues) { throw ExitCode(2) }
        let evaluator = Evaluator(snapshot: objects.snapshot)
        let flow = Flow(
            source: try endpoint(source, evaluator), destination: try endpoint(destination, evaluator),
            traffic: try parsedTraffic(), family: family.flatMap { IPAddress.Family(rawValue: $0) })
        do {
            let verdict = try evaluator.verdict(flow)
            print(verdict.description)
            if !verdict.allowed { throw ExitCode(1) }
        } catch let error as EvaluationError {
            printError("picket: error: \(error.message)")
            throw ExitCode(2)
        }
    }

    private func endpoint(_ text: String, _ evaluator: Evaluator) throws -> Endpoint {
        if let address = IPAddress(text) { return evaluator.endpoint(for: address) }
        let parts = text.split(separator: "/")
        guard parts.count == 2 else {
            printError("picket: error: \"\(text)\" is neither namespace/name nor an IP address")
            throw ExitCode(2)
        }
        let key = ObjectKey(namespace: String(parts[0]), name: String(parts[1]))
        guard evaluator.snapshot.pods.contains(where: { $0.key == key }) else {
            printError("picket: error: no pod \(key) in the \(inputs.cluster.isLive ? "cluster" : "manifests")")
            throw ExitCode(2)
        }
        return .pod(key)
    }
}
