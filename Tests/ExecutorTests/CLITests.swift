import Executor
import Foundation
import KubeModel
import PolicyCompiler
import Testing

/// `picket apply` and `picket cleanup` as an operator runs them: the built binary, run with
/// `ip netns exec NAME picket ...` in a scratch namespace.
@Suite("picket apply / cleanup in a real kernel", kernelOnly)
struct CLITests {
    /// The `picket` executable next to the test bundle.
    static let picket: String = {
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The bundle may be a directory (…/picketPackageTests.xctest/…) on some platforms.
        for _ in 0..<6 where !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("picket").path) {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("picket").path
    }()

    /// The shop as manifests (the same cluster as `Shop`, minus api-egress).
    static let shopManifests = """
        apiVersion: v1
        kind: Pod
        metadata: {name: web, namespace: shop, labels: {app: web}}
        spec: {nodeName: node-a, containers: [{name: web, ports: [{name: http, containerPort: 80}]}]}
        status: {phase: Running, podIP: 10.244.1.2}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: api, namespace: shop, labels: {app: api}}
        spec: {nodeName: node-a}
        status: {phase: Running, podIP: 10.244.1.3}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: client, namespace: shop, labels: {app: client}}
        spec: {nodeName: node-b}
        status: {phase: Running, podIP: 10.244.2.5}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: web-allow-client, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: web}}
          ingress:
          - from: [{podSelector: {matchLabels: {app: client}}}]
            ports: [{protocol: TCP, port: 80}]

        """

    /// A policy that fails validation (port out of range): it still isolates api, failing closed.
    static let invalidManifest = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: api-bad-port, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: api}}
          ingress:
          - ports: [{protocol: TCP, port: 70000}]

        """

    /// A fresh directory holding `files` (name -> text); removed by the caller.
    func manifestDirectory(_ files: [String: String]) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("picket-exec-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for (name, text) in files {
            try Data(text.utf8).write(to: directory.appendingPathComponent(name))
        }
        return directory
    }

    /// What `picket` compiles from a directory.
    func compiled(_ directory: URL) -> Ruleset {
        compile(ManifestLoader.load([directory.path]).snapshot, node: "node-a")
    }

    /// `ip netns exec NAME picket ARGUMENTS`.
    func picket(_ namespace: ScratchNamespace, _ arguments: String...) throws -> CommandResult {
        try namespace.exec(Self.picket, arguments)
    }

    @Test("apply: exit 0 printing the changes; again: `no change`; cleanup twice: the second prints `no change`")
    func applyAndCleanup() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.picket), "no picket binary at \(Self.picket)")
        try withScratchNamespace { namespace in
            let directory = try manifestDirectory(["shop.yaml": Self.shopManifests])
            defer { try? FileManager.default.removeItem(at: directory) }
            let ruleset = compiled(directory)

            let first = try picket(namespace, "apply", "--node", "node-a", "--from", directory.path)
            #expect(first.status == 0, "\(first)")
            let lines = first.stdout.split(separator: "\n").map(String.init)
            #expect(lines.filter { $0.hasPrefix("set created: ") }.count == ruleset.sets.count, "\(first)")
            #expect(lines.contains("chain written: ipv4 PICKET-MARK-FORWARD"), "\(first)")
            #expect(lines.contains("hooks inserted: ipv4 mangle FORWARD, INPUT"), "\(first)")
            try expectKernelHolds(ruleset, in: namespace)

            let second = try picket(namespace, "apply", "--node", "node-a", "--from", directory.path)
            #expect(second.status == 0, "\(second)")
            #expect(second.stdout == "no change\n")
            #expect(second.stderr.isEmpty, "\(second)")

            let cleanup = try picket(namespace, "cleanup")
            #expect(cleanup.status == 0, "\(cleanup)")
            #expect(cleanup.stdout.contains("hooks removed: ipv4 mangle FORWARD, INPUT"), "\(cleanup)")
            #expect(try namespace.table(.v4).picketChains.isEmpty)
            #expect(try namespace.picketSets().isEmpty)

            let again = try picket(namespace, "cleanup")
            #expect(again.status == 0, "\(again)")
            #expect(again.stdout == "no change\n")
        }
    }

    @Test("invalid input: exit 2 naming the file and object, and the rules are still applied (failing closed)")
    func invalidInput() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.picket), "no picket binary at \(Self.picket)")
        try withScratchNamespace { namespace in
            let directory = try manifestDirectory(["shop.yaml": Self.shopManifests, "bad.yaml": Self.invalidManifest])
            defer { try? FileManager.default.removeItem(at: directory) }
            let ruleset = compiled(directory)

            let result = try picket(namespace, "apply", "--node", "node-a", "--from", directory.path)
            #expect(result.status == 2, "\(result)")
            #expect(result.stderr.contains("bad.yaml: NetworkPolicy shop/api-bad-port: spec.ingress[0].ports[0].port: 70000"), "\(result)")
            #expect(result.stdout.contains("chain written: ipv4 PICKET-MARK-FORWARD"), "\(result)")
            try expectKernelHolds(ruleset, in: namespace)
            // api is isolated for ingress by the invalid policy and admits nothing.
            #expect(try namespace.picketSets()[Names.dispatchSet(.ingress, .v4)]?.members.map { String($0.split(separator: " ")[0]) }.sorted() == ["10.244.1.2", "10.244.1.3"])

            let again = try picket(namespace, "apply", "--node", "node-a", "--from", directory.path)
            #expect(again.status == 2)
            #expect(again.stdout == "no change\n")
        }
    }

    @Test("a kernel refusal (a foreign set holding a Picket name with another type): exit 1 naming the step, nothing of Picket's left in force")
    func kernelRefusal() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.picket), "no picket binary at \(Self.picket)")
        try withScratchNamespace { namespace in
            let directory = try manifestDirectory(["shop.yaml": Self.shopManifests])
            defer { try? FileManager.default.removeItem(at: directory) }
            try namespace.run("ipset", "create", "picket-ingress-map-v4", "hash:net")
            let tablesBefore = try namespace.saveBoth()

            let result = try picket(namespace, "apply", "--node", "node-a", "--from", directory.path)
            print("ExecutorTests.kernelRefusal: picket apply with a foreign hash:net picket-ingress-map-v4: \(result)")
            #expect(result.status == 1, "\(result)")
            #expect(result.stdout.isEmpty, "\(result)")
            #expect(result.stderr.hasPrefix("picket: error: apply failed, the previous rules stay in force: ipset restore (new sets): "), "\(result)")
            #expect(result.stderr.contains("swap picket-ingress-map-v4"), "the failing line is shown: \(result)")
            #expect(try namespace.saveBoth() == tablesBefore, "no chain or hook was written")
            #expect(try namespace.picketSets()["picket-ingress-map-v4"]?.type == "hash:net", "the foreign set is left alone")
            let leftSets = try namespace.setNames()
            #expect(leftSets == ["picket-ingress-map-v4"], "only the foreign set remains")


            // Once the operator removes the foreign set, apply succeeds.
            try namespace.run("ipset", "destroy", "picket-ingress-map-v4")
            let retry = try picket(namespace, "apply", "--node", "node-a", "--from", directory.path)
            #expect(retry.status == 0, "\(retry)")
            try expectKernelHolds(compiled(directory), in: namespace)
        }
    }
}
