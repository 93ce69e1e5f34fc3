import Foundation
import KubeModel
import PolicyCompiler

// The decode benchmark: how fast cluster-sized JSON becomes the model. Pods are written the way
// `kubectl get pods -A -o json` prints them (~6 KB each: managedFields, env, volumes, probes,
// resources, conditions, container statuses, annotations), of which Picket keeps a few percent.
// Three readers on the same bytes: Picket's JSON path (as files and as API list pages, the latter
// also on the page the API server would send: kind first, items without kind), Foundation's
// JSONDecoder into the model's small Decodable structs, and Yams (JSON read as YAML, as before the
// JSON path; on a sample).
// Then dry-run end to end: a 10k-pod / 2k-policy cluster exported as one JSON List file, read,
// compiled for node-0 and rendered, next to compiling alone.

/// Writes clusters as `kubectl get -o json` would print them.
enum ClusterExport {
    /// One `List` holding namespaces, pods (real-shaped, or lean: only what Picket reads) and
    /// policies, in kubectl's key order.
    static func list(_ cluster: SyntheticCluster, realShaped: Bool) -> [UInt8] {
        var out = #"{"apiVersion":"v1","items":["#
        var first = true
        func separate() {
            if !first { out += "," }
            first = false
        }
        for namespace in cluster.namespaces {
            separate()
            out += #"{"apiVersion":"v1","kind":"Namespace","metadata":{"creationTimestamp":"2024-05-14T10:37:52Z","labels":"#
            out += object(namespace.labels)
            out += #","name":\#(quoted(namespace.name)),"resourceVersion":"4812","uid":"6bf1ce6b-2f47-5e50-84c1-9860cd5be354"},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}"#
        }
        for (i, pod) in cluster.pods.enumerated() {
            separate()
            if realShaped { realShapedPod(pod, index: i, into: &out) } else { leanPod(pod, into: &out) }
        }
        for policy in cluster.writtenPolicies {
            separate()
            out += #"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":\#(quoted(policy.key.name)),"namespace":\#(quoted(policy.key.namespace))},"spec":"#
            out += spec(policy.spec)
            out += "}"
        }
        out += #"],"kind":"List","metadata":{"resourceVersion":""}}"#
        return Array(out.utf8)
    }

    /// `count` real-shaped pods of `cluster` as one `PodList` (API style: items without kind).
    static func podList(_ cluster: SyntheticCluster, count: Int) -> [UInt8] {
        var out = #"{"apiVersion":"v1","items":["#
        for (i, pod) in cluster.pods.prefix(count).enumerated() {
            if i > 0 { out += "," }
            realShapedPod(pod, index: i, into: &out)
        }
        out += #"],"kind":"PodList","metadata":{"resourceVersion":"912345"}}"#
        return Array(out.utf8)
    }

    /// The same pods as the API server writes a list page: `kind`, `apiVersion` and `metadata`
    /// first, items without kind or apiVersion (Go's field order, not kubectl's sorted keys).
    static func apiPodList(_ cluster: SyntheticCluster, count: Int) -> [UInt8] {
        var out = #"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"912345","continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6OTEyMzQ1fQ","remainingItemCount":250},"items":["#
        for (i, pod) in cluster.pods.prefix(count).enumerated() {
            if i > 0 { out += "," }
            realShapedPod(pod, index: i, typeMeta: false, into: &out)
        }
        out += "]}"
        return Array(out.utf8)
    }

    /// A pod with only the fields Picket reads, ~0.4 KB.
    static func leanPod(_ pod: Pod, into out: inout String) {
        out += #"{"apiVersion":"v1","kind":"Pod","metadata":{"labels":\#(object(pod.labels)),"name":\#(quoted(pod.key.name)),"namespace":\#(quoted(pod.key.namespace))},"spec":{"containers":[{"name":"main","ports":["#
        out += pod.ports.map { port in
            #"{"containerPort":\#(port.number),"#
                + (port.name.map { #""name":\#(quoted($0)),"# } ?? "") + #""protocol":"\#(port.proto.rawValue)"}"#
        }.joined(separator: ",")
        out += #"]}],"hostNetwork":\#(pod.hostNetwork),"nodeName":\#(quoted(pod.nodeName ?? ""))},"status":{"phase":\#(quoted(pod.phase ?? "Running")),"podIPs":["#
        out += pod.ips.map { #"{"ip":"\#($0)"}"# }.joined(separator: ",")
        out += "]}}"
    }

    /// A pod as the API returns it, ~6 KB.
    static func realShapedPod(_ pod: Pod, index: Int, typeMeta: Bool = true, into out: inout String) {
        let name = pod.key.name
        let ns = pod.key.namespace
        let app = pod.labels["app"] ?? "app"
        let ip = pod.ips.first?.description ?? ""
        let node = pod.nodeName ?? ""
        let uid = "6bf1ce6b-2f47-5e50-\(String(format: "%04x", index & 0xFFFF))-9860cd5be354"
        out += typeMeta ? #"{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":"# : #"{"metadata":{"annotations":"#
        out += #"{"kubectl.kubernetes.io/restartedAt":"2024-05-14T10:37:52Z","prometheus.io/scrape":"true","prometheus.io/port":"9090","checksum/config":"5f1b3c0e9a7d4e2b8c6f0a1d3e5b7c9f2a4d6e8b0c1f3a5d7e9b2c4f6a8d0e1"},"creationTimestamp":"2024-05-14T10:37:52Z","generateName":"\#(app)-7d9f8b6c5-","labels":"#
        out += object(pod.labels)
        out += #","managedFields":[{"apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{},"f:tier":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"main\"}":{".":{},"f:args":{},"f:env":{".":{},"k:{\"name\":\"LOG_LEVEL\"}":{".":{},"f:name":{},"f:value":{}}},"f:image":{},"f:imagePullPolicy":{},"f:livenessProbe":{".":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}}},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:resources":{".":{},"f:limits":{},"f:requests":{}}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}},"manager":"kube-controller-manager","operation":"Update","time":"2024-05-14T10:37:52Z"},{"apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\"type\":\"ContainersReady\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Initialized\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:hostIP":{},"f:hostIPs":{},"f:phase":{},"f:podIP":{},"f:podIPs":{".":{},"k:{\"ip\":\"\#(ip)\"}":{".":{},"f:ip":{}}},"f:startTime":{}}},"manager":"kubelet","operation":"Update","subresource":"status","time":"2024-05-14T10:38:01Z"}],"name":\#(quoted(name)),"namespace":\#(quoted(ns)),"ownerReferences":[{"apiVersion":"apps/v1","blockOwnerDeletion":true,"controller":true,"kind":"ReplicaSet","name":"\#(app)-7d9f8b6c5","uid":"0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"}],"resourceVersion":"\#(45_000 + index)","uid":"\#(uid)"},"spec":{"containers":[{"args":["--config=/etc/\#(app)/config.yaml","--listen=:8080","--metrics=:9090"],"env":["#
        for e in 0..<10 {
            if e > 0 { out += "," }
            out += #"{"name":"ENV_VAR_\#(e)","value":"value-\#(e)-for-\#(app)-\#(ns)"}"#
        }
        out += #"],"image":"registry.example.com/\#(app):1.24.\#(index % 10)","imagePullPolicy":"IfNotPresent","livenessProbe":{"failureThreshold":3,"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"initialDelaySeconds":10,"periodSeconds":10,"successThreshold":1,"timeoutSeconds":1},"name":"main","ports":["#
        for (p, port) in pod.ports.enumerated() {
            if p > 0 { out += "," }
            out += #"{"containerPort":\#(port.number),"#
            if let portName = port.name { out += #""name":\#(quoted(portName)),"# }
            out += #""protocol":"\#(port.proto.rawValue)"}"#
        }
        out += #"],"readinessProbe":{"failureThreshold":3,"httpGet":{"path":"/readyz","port":8080,"scheme":"HTTP"},"periodSeconds":5,"successThreshold":1,"timeoutSeconds":1},"resources":{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m","memory":"128Mi"}},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","volumeMounts":[{"mountPath":"/etc/\#(app)","name":"config","readOnly":true},{"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","name":"kube-api-access-x7k2p","readOnly":true}]}],"dnsPolicy":"ClusterFirst","enableServiceLinks":true,"nodeName":\#(quoted(node)),"preemptionPolicy":"PreemptLowerPriority","priority":0,"restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{"fsGroup":2000,"runAsNonRoot":true},"serviceAccount":"default","serviceAccountName":"default","terminationGracePeriodSeconds":30,"tolerations":[{"effect":"NoExecute","key":"node.kubernetes.io/not-ready","operator":"Exists","tolerationSeconds":300},{"effect":"NoExecute","key":"node.kubernetes.io/unreachable","operator":"Exists","tolerationSeconds":300}],"volumes":[{"configMap":{"defaultMode":420,"name":"\#(app)-config"},"name":"config"},{"name":"kube-api-access-x7k2p","projected":{"defaultMode":420,"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"items":[{"key":"ca.crt","path":"ca.crt"}],"name":"kube-root-ca.crt"}},{"downwardAPI":{"items":[{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"},"path":"namespace"}]}}]}}]},"status":{"conditions":["#
        for (c, type) in ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].enumerated() {
            if c > 0 { out += "," }
            out += #"{"lastProbeTime":null,"lastTransitionTime":"2024-05-14T10:3\#(c):52Z","status":"True","type":"\#(type)"}"#
        }
        out += #"],"containerStatuses":[{"containerID":"containerd://8d3f0c1e5b7a9d2f4c6e8a0b1d3f5c7e9a2b4d6f8c0e1a3b5d7f9c2e4a6b8d0f","image":"registry.example.com/\#(app):1.24.\#(index % 10)","imageID":"registry.example.com/\#(app)@sha256:3c1d5e7f9a2b4c6d8e0f1a3b5c7d9e2f4a6b8c0d1e3f5a7b9c2d4e6f8a0b1c3d","lastState":{},"name":"main","ready":true,"restartCount":0,"started":true,"state":{"running":{"startedAt":"2024-05-14T10:37:58Z"}}}],"hostIP":"172.18.0.\#(index % 200 + 2)","hostIPs":[{"ip":"172.18.0.\#(index % 200 + 2)"}],"phase":\#(quoted(pod.phase ?? "Running")),"#
        if !ip.isEmpty {
            out += #""podIP":"\#(ip)","podIPs":["#
            out += pod.ips.map { #"{"ip":"\#($0)"}"# }.joined(separator: ",")
            out += "],"
        }
        out += #""qosClass":"Burstable","startTime":"2024-05-14T10:37:52Z"}}"#
    }

    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func object(_ map: [String: String]) -> String {
        "{" + map.keys.sorted().map { "\(quoted($0)):\(quoted(map[$0]!))" }.joined(separator: ",") + "}"
    }

    static func selector(_ s: LabelSelector) -> String {
        var fields: [String] = []
        if let labels = s.matchLabels { fields.append(#""matchLabels":\#(object(labels))"#) }
        if let expressions = s.matchExpressions {
            let list = expressions.map { e in
                var f = [#""key":\#(quoted(e.key))"#, #""operator":\#(quoted(e.operator))"#]
                if let values = e.values { f.append(#""values":[\#(values.map(quoted).joined(separator: ","))]"#) }
                return "{" + f.joined(separator: ",") + "}"
            }
            fields.append(#""matchExpressions":[\#(list.joined(separator: ","))]"#)
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    static func spec(_ spec: NetworkPolicy.Spec) -> String {
        var fields = [#""podSelector":\#(selector(spec.podSelector))"#]
        if let types = spec.policyTypes { fields.append(#""policyTypes":[\#(types.map(quoted).joined(separator: ","))]"#) }
        func rules(_ rules: [NetworkPolicy.Rule], peers key: String) -> String {
            "[" + rules.map { rule in
                var f: [String] = []
                if let peers = rule.peers {
                    let list = peers.map { peer in
                        var p: [String] = []
                        if let s = peer.podSelector { p.append(#""podSelector":\#(selector(s))"#) }
                        if let s = peer.namespaceSelector { p.append(#""namespaceSelector":\#(selector(s))"#) }
                        if let b = peer.ipBlock {
                            var block = [#""cidr":\#(quoted(b.cidr))"#]
                            if let except = b.except { block.append(#""except":[\#(except.map(quoted).joined(separator: ","))]"#) }
                            p.append(#""ipBlock":{\#(block.joined(separator: ","))}"#)
                        }
                        return "{" + p.joined(separator: ",") + "}"
                    }
                    f.append(#""\#(key)":[\#(list.joined(separator: ","))]"#)
                }
                if let ports = rule.ports {
                    let list = ports.map { port in
                        var p: [String] = []
                        switch port.port {
                        case .number(let n): p.append(#""port":\#(n)"#)
                        case .name(let name): p.append(#""port":\#(quoted(name))"#)
                        case nil: break
                        }
                        if let proto = port.protocol { p.append(#""protocol":\#(quoted(proto))"#) }
                        if let end = port.endPort { p.append(#""endPort":\#(end)"#) }
                        return "{" + p.joined(separator: ",") + "}"
                    }
                    f.append(#""ports":[\#(list.joined(separator: ","))]"#)
                }
                return "{" + f.joined(separator: ",") + "}"
            }.joined(separator: ",") + "]"
        }
        if let ingress = spec.ingress { fields.append(#""ingress":\#(rules(ingress, peers: "from"))"#) }
        if let egress = spec.egress { fields.append(#""egress":\#(rules(egress, peers: "to"))"#) }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

/// The model's Pod through Foundation's JSONDecoder: the "small Decodable structs" baseline.
private struct DecodablePodList: Decodable {
    var items: [Pod]
}

/// Decode throughput and dry-run end to end.
struct DecodeBench {
    let clock = ContinuousClock()
    /// Pods in the PodList (the issue's 10,000).
    var pods = 10_000
    /// Pods of the Yams sample (Yams is ~1 MB/s).
    var yamsPods = 200
    /// Timed runs of the fast readers.
    var runs = 5
    /// A directory to write the inputs into for outside tools (`pods.json`, the PodList;
    /// `cluster-lean.json` and `cluster.json`, the 10k cluster as Lists), if any.
    var exportPath: String?

    /// Runs the decode benchmark and prints its tables; returns false when a reader failed.
    func run() -> Bool {
        var generator = ClusterGenerator()
        let size = ClusterSize.all.first { $0.label == "10k" }!
        let cluster = generator.cluster(size)
        let podList = ClusterExport.podList(cluster, count: pods)
        if let exportPath {
            let directory = URL(fileURLWithPath: exportPath)
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                try Data(podList).write(to: directory.appendingPathComponent("pods.json"))
                try Data(ClusterExport.list(cluster, realShaped: false)).write(to: directory.appendingPathComponent("cluster-lean.json"))
                try Data(ClusterExport.list(cluster, realShaped: true)).write(to: directory.appendingPathComponent("cluster.json"))
                print("wrote pods.json, cluster-lean.json and cluster.json to \(exportPath)")
            } catch {
                printErr("picket-bench: error: writing into \(exportPath): \(error)")
                return false
            }
        }
        print("\ndecode: PodList of \(Format.count(pods)) real-shaped pods, \(Format.bytes(podList.count)) (\(Format.bytes(podList.count / pods)) per pod)")
        print("| reader | time (median) | MB/s | pods | peak RSS growth |")
        print("|---|---:|---:|---:|---:|")
        var ok = true

        ok = row("Picket JSON path", bytes: podList.count, runs: runs) {
            podList.withUnsafeBytes { ManifestDecoder.decode(bytes: $0, source: "pods.json") }.pods.count
        } && ok
        ok = row("APIDecoder.decodeList, same bytes (kubectl order)", bytes: podList.count, runs: runs) {
            decodeList(podList)
        } && ok
        let apiPage = ClusterExport.apiPodList(cluster, count: pods)
        ok = row("APIDecoder.decodeList, API server order (\(Format.bytes(apiPage.count)))", bytes: apiPage.count, runs: runs) {
            decodeList(apiPage)
        } && ok
        ok = row("JSONDecoder into small structs", bytes: podList.count, runs: max(1, runs / 2)) {
            do {
                return try JSONDecoder().decode(DecodablePodList.self, from: Data(podList)).items.count
            } catch {
                printErr("picket-bench: JSONDecoder: \(error)")
                return -1
            }
        } && ok
        let sample = ClusterExport.podList(cluster, count: yamsPods)
        let sampleText = String(decoding: sample, as: UTF8.self)
        ok = row("Yams (JSON read as YAML, \(yamsPods) pods)", bytes: sample.count, runs: 1) {
            ManifestDecoder.decodeYAML(sampleText, source: "pods.json").pods.count
        } && ok
        print("\ndry-run end to end: each cluster exported as one JSON List, node \(SyntheticCluster.benchNode)")
        print("| cluster | export | size | read + decode | snapshot + compile + render | total | issues |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for size in ClusterSize.all {
            var sized = ClusterGenerator()
            let exported = size.label == "10k" ? cluster : sized.cluster(size)
            ok = endToEnd(exported, label: size.label, realShaped: false) && ok
            ok = endToEnd(exported, label: size.label, realShaped: true) && ok
        }
        return ok
    }

    /// A list page through the API path; returns the pod count, -1 when it fails or leaves items out.
    private func decodeList(_ page: [UInt8]) -> Int {
        do {
            let decoded = try page.withUnsafeBytes { bytes throws(APIDecodeError) in try APIDecoder.decodeList(bytes, source: "pods") }
            guard decoded.issues.isEmpty else {
                printErr("picket-bench: APIDecoder.decodeList: \(decoded.issues.first!)")
                return -1
            }
            return decoded.items.count
        } catch {
            printErr("picket-bench: APIDecoder.decodeList: \(error)")
            return -1
        }
    }

    /// One table row: median time of `runs` runs of `body` (which returns the pod count).
    private func row(_ name: String, bytes: Int, runs: Int, _ body: () -> Int) -> Bool {
        if let reason = PeakRSS.reset() { printErr("picket-bench: warning: \(reason)") }
        let before = PeakRSS.bytes() ?? 0
        var samples: [Duration] = []
        var count = 0
        for _ in 0..<runs {
            let start = clock.now
            count = body()
            samples.append(clock.now - start)
        }
        let growth = (PeakRSS.bytes() ?? 0) - before
        let time = median(samples)
        let seconds = Double(time.components.seconds) + Double(time.components.attoseconds) / 1e18
        let rate = Double(bytes) / 1e6 / seconds
        print("| \(name) | \(Format.ms(time)) | \(String(format: "%.0f", rate)) | \(Format.count(count)) | \(Format.mebibytes(growth)) |")
        return count >= 0
    }

    /// A cluster as one JSON List file: read + snapshot + compile + render, vs compile alone.
    private func endToEnd(_ cluster: SyntheticCluster, label: String, realShaped: Bool) -> Bool {
        let list = ClusterExport.list(cluster, realShaped: realShaped)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("picket-bench-\(getpid())-cluster.json")
        do {
            try Data(list).write(to: path)
        } catch {
            printErr("picket-bench: error: writing \(path.path): \(error)")
            return false
        }
        defer {
            do { try FileManager.default.removeItem(at: path) } catch { printErr("picket-bench: warning: \(error)") }
        }
        let node = SyntheticCluster.benchNode
        var reads: [Duration] = []
        var compiles: [Duration] = []
        var totals: [Duration] = []
        var issues = 0
        for _ in 0..<runs {
            let start = clock.now
            let set = ManifestLoader.load([path.path])
            let read = clock.now
            let ruleset = compile(set.snapshot, node: node)
            let text = ruleset.ipsetRestore(node: node) + (ruleset.iptablesRestore(family: .v4, node: node) ?? "")
            let end = clock.now
            precondition(!text.isEmpty)
            reads.append(read - start)
            compiles.append(end - read)
            totals.append(end - start)
            issues = set.issues.count
        }
        print("| \(label) | \(realShaped ? "real-shaped pods" : "lean pods") | \(Format.bytes(list.count)) | \(Format.ms(median(reads))) | \(Format.ms(median(compiles))) | \(Format.ms(median(totals))) | \(issues) |")
        return issues == 0
    }
}
