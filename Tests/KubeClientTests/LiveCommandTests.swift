import Foundation
import KubeModel
import KubeTestSupport
import Testing
import ToolRunner

/// `picket dry-run`, `diff` and `explain` against a live cluster (the test API server holding the
/// bundled demo cluster), checked against the same commands on the manifests.
@Suite(.serialized, .enabled(if: hasTestServerTools)) struct LiveCommandTests {
    /// The picket executable next to the test bundle.
    static let picket: String = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("picket").path) && dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("picket").path
    }()

    static let demo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/demo/input").path

    /// The demo's objects of the kinds the API server holds, as JSON values.
    static func demoObjects() throws -> [[String: Any]] {
        var objects: [[String: Any]] = []
        for file in try ManifestLoader.manifestFiles(under: demo) {
            let yaml = try String(contentsOfFile: file, encoding: .utf8)
            let stream = try #require(YAMLToJSON.stream(fromYAML: yaml))
            for line in stream.split(separator: "\n") {
                guard let value = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
                let kind = value["kind"] as? String ?? ""
                var items = [value]
                if kind.hasSuffix("List"), let listed = value["items"] as? [[String: Any]] {
                    items = listed.map { item in
                        var item = item
                        if item["kind"] == nil && kind != "List" { item["kind"] = String(kind.dropLast(4)) }
                        return item
                    }
                }
                objects += items.filter { ["Namespace", "Pod", "NetworkPolicy"].contains($0["kind"] as? String ?? "") }
            }
        }
        return objects
    }

    /// A server holding the demo, and a kubeconfig for it.
    static func demoCluster() throws -> (TestAPIServer, String) {
        let server = try TestAPIServer()
        try server.apply(try demoObjects())
        let kubeconfig = server.directory + "/kubeconfig"
        try server.writeKubeconfig(to: kubeconfig)
        return (server, kubeconfig)
    }

    @Test func dryRunOfTheLiveClusterPrintsWhatTheManifestsCompileTo() throws {
        let (server, kubeconfig) = try Self.demoCluster()
        defer { server.stop() }
        for node in ["node-a", "node-b"] {
            let live = runTool(Self.picket, ["dry-run", "--kubeconfig", kubeconfig, "--node", node], timeout: 60)
            let files = runTool(Self.picket, ["dry-run", "--from", Self.demo, "--node", node], timeout: 60)
            #expect(live.status == 0, "\(live.stderr)")
            #expect(!live.stdout.isEmpty && live.stdout == files.stdout, "\(node): live and file outputs differ")
        }
    }

    @Test func diffLaysTheChangeOverTheLiveCluster() throws {
        let (server, kubeconfig) = try Self.demoCluster()
        defer { server.stop() }
        let change = server.directory + "/deny-frontend.yaml"
        try """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: deny-all, namespace: frontend}
            spec: {podSelector: {}, policyTypes: [Ingress]}
            """.write(toFile: change, atomically: true, encoding: .utf8)
        let diff = runTool(Self.picket, ["diff", "--kubeconfig", kubeconfig, "--after", change], timeout: 60)
        #expect(diff.status == 1, "\(diff.stderr)")
        #expect(diff.stdout.contains("connectivity:") && diff.stdout.contains("now denied from:"), "\(diff.stdout)")
        // The same change made by hand on the files says the same.
        let files = runTool(Self.picket, ["diff", "--before", Self.demo, "--after", Self.demo, "--after", change], timeout: 60)
        #expect(files.stdout == diff.stdout)
        // Laying the cluster's own objects over it changes nothing.
        let same = runTool(Self.picket, ["diff", "--kubeconfig", kubeconfig, "--after", Self.demo], timeout: 60)
        #expect(same.status == 0, "\(same.stdout)\(same.stderr)")
        #expect(same.stdout == "rules: no change\nconnectivity: no change\n")
    }

    @Test func explainReadsTheLiveCluster() throws {
        let (server, kubeconfig) = try Self.demoCluster()
        defer { server.stop() }
        let pods = try #require(try Self.demoObjects().filter { $0["kind"] as? String == "Pod" }.compactMap { $0["metadata"] as? [String: Any] })
        let keys = pods.compactMap { meta -> String? in
            guard let ns = meta["namespace"] as? String, let name = meta["name"] as? String else { return nil }
            return "\(ns)/\(name)"
        }
        try #require(keys.count >= 2)
        for (source, destination) in [(keys[0], keys[keys.count - 1]), (keys[keys.count - 1], keys[0])] {
            let live = runTool(Self.picket, ["explain", "--kubeconfig", kubeconfig, source, destination, "80"], timeout: 60)
            let files = runTool(Self.picket, ["explain", "--from", Self.demo, source, destination, "80"], timeout: 60)
            #expect(live.status == files.status && live.stdout == files.stdout && !live.stdout.isEmpty, "\(live.stdout)\(live.stderr)")
        }
    }

    @Test func anUnreachableClusterIsExit2NamingTheServer() throws {
        let (server, written) = try Self.demoCluster()
        let api = server.api
        let kubeconfig = NSTemporaryDirectory() + "picket-kubeconfig-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.copyItem(atPath: written, toPath: kubeconfig)
        defer { try? FileManager.default.removeItem(atPath: kubeconfig) }
        server.stop()
        let result = runTool(Self.picket, ["dry-run", "--kubeconfig", kubeconfig, "--node", "node-a"], timeout: 120)
        #expect(result.status == 2)
        #expect(result.stderr.contains("picket: error: \(api): GET /api/v1/"), "\(result.stderr)")
        #expect(result.stderr.contains("connection refused"), "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        let both = runTool(Self.picket, ["dry-run", "--kubeconfig", kubeconfig, "--from", Self.demo, "--node", "node-a"], timeout: 30)
        #expect(both.status == 64 && both.stderr.contains("not both"), "\(both.stderr)")
    }
}
