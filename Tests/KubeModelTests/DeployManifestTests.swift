import Foundation
import Testing
import Yams

/// deploy/picket.yaml: least privilege, the seed's probe port, every node, the downward API.
@Suite struct DeployManifestTests {
    static func objects() throws -> [[String: Any]] {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("deploy/picket.yaml").path
        return try Yams.load_all(yaml: String(contentsOfFile: path, encoding: .utf8)).compactMap { $0 as? [String: Any] }
    }

    static func object(_ kind: String) throws -> [String: Any] {
        try #require(try objects().first { $0["kind"] as? String == kind }, "no \(kind)")
    }

    @Test func theClusterRoleReadsPodsNamespacesNodesAndNetworkPoliciesOnly() throws {
        let rules = try #require(try Self.object("ClusterRole")["rules"] as? [[String: Any]])
        var granted: [String] = []
        for rule in rules {
            #expect((rule["verbs"] as? [String])?.sorted() == ["get", "list", "watch"])
            for group in rule["apiGroups"] as? [String] ?? [] {
                for resource in rule["resources"] as? [String] ?? [] { granted.append("\(group)/\(resource)") }
            }
        }
        #expect(granted.sorted() == ["/namespaces", "/nodes", "/pods", "networking.k8s.io/networkpolicies"])
    }

    @Test func theDaemonSetRunsOnEveryNodeWithCapabilitiesNotPrivilege() throws {
        let spec = try #require(((try Self.object("DaemonSet")["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
        #expect(spec["hostNetwork"] as? Bool == true)
        #expect(spec["priorityClassName"] as? String == "system-node-critical")
        #expect((spec["tolerations"] as? [[String: Any]])?.contains { $0["operator"] as? String == "Exists" && $0["key"] == nil && $0["effect"] == nil } == true)
        let container = try #require((spec["containers"] as? [[String: Any]])?.first)
        let security = try #require(container["securityContext"] as? [String: Any])
        #expect(security["privileged"] as? Bool != true)
        #expect(((security["capabilities"] as? [String: Any])?["add"] as? [String])?.sorted() == ["NET_ADMIN", "NET_RAW"])
        for probe in ["livenessProbe", "readinessProbe"] {
            let get = try #require((container[probe] as? [String: Any])?["httpGet"] as? [String: Any])
            #expect(get["path"] as? String == "/healthz" && get["port"] as? Int == 20244, "\(probe)")
        }
        let env = try #require(container["env"] as? [[String: Any]])
        let nodeName = try #require(env.first { $0["name"] as? String == "NODE_NAME" })
        #expect(((nodeName["valueFrom"] as? [String: Any])?["fieldRef"] as? [String: Any])?["fieldPath"] as? String == "spec.nodeName")
        let mounts = try #require(container["volumeMounts"] as? [[String: Any]])
        #expect(mounts.contains { $0["mountPath"] as? String == "/run/xtables.lock" })
        let resources = try #require(container["resources"] as? [String: Any])
        #expect(resources["requests"] != nil && resources["limits"] != nil)
        #expect((container["args"] as? [String])?.first == "daemon")
    }
}
