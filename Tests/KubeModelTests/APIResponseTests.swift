import KubeModel
import Testing

// API responses: list pages, watch events, Status bodies.

/// Decodes a list page from text.
private func list(_ json: String, source: String = "GET pods") throws(APIDecodeError) -> ListPage {
    var text = json
    let result = text.withUTF8 { utf8 in
        Result { () throws(APIDecodeError) in try APIDecoder.decodeList(UnsafeRawBufferPointer(utf8), source: source) }
    }
    return try result.get()
}

/// Decodes a watch event from text.
private func event(_ json: String, source: String = "watch pods") throws(APIDecodeError) -> WatchEvent {
    var text = json
    let result = text.withUTF8 { utf8 in
        Result { () throws(APIDecodeError) in try APIDecoder.decodeWatchEvent(UnsafeRawBufferPointer(utf8), source: source) }
    }
    return try result.get()
}

/// Decodes a Status body from text.
private func status(_ json: String) -> APIStatus? {
    var text = json
    return text.withUTF8 { APIDecoder.decodeStatus(UnsafeRawBufferPointer($0)) }
}

/// The error a list page throws, nil when it decodes.
private func listError(_ json: String) -> APIDecodeError? {
    if case .failure(let error) = Result(catching: { () throws(APIDecodeError) in try list(json) }) { return error }
    return nil
}

/// The error a watch event throws, nil when it decodes.
private func eventError(_ json: String) -> APIDecodeError? {
    if case .failure(let error) = Result(catching: { () throws(APIDecodeError) in try event(json) }) { return error }
    return nil
}

extension APIObject {
    var pod: Pod? { if case .pod(let pod) = self { pod } else { nil } }
    var node: Node? { if case .node(let node) = self { node } else { nil } }
    var policy: Policy? { if case .networkPolicy(let policy) = self { policy } else { nil } }
    var namespaceObject: Namespace? { if case .namespace(let namespace) = self { namespace } else { nil } }
}

/// A pod as the API server returns it (~4 KB: managedFields, env, probes, volumes, statuses),
/// with or without kind and apiVersion (list items have neither).
func realShapedPod(
    name: String, namespace: String = "shop", ip: String = "10.244.1.5", labels: String = #"{"app":"web","tier":"front"}"#,
    containerPort: String = "8080", typeMeta: Bool = true, resourceVersion: String = "4711"
) -> String {
    let head = typeMeta ? #""apiVersion":"v1","kind":"Pod","# : ""
    return #"""
        {\#(head)"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2024-05-14T10:37:52Z","prometheus.io/scrape":"true"},"creationTimestamp":"2024-05-14T10:37:52Z","generateName":"web-7d9f8b6c5-","labels":\#(labels),"managedFields":[{"apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"0c1d2e3f\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"main\"}":{".":{},"f:env":{".":{},"k:{\"name\":\"LOG_LEVEL\"}":{".":{},"f:name":{},"f:value":{}}},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}}}}}},"manager":"kube-controller-manager","operation":"Update","time":"2024-05-14T10:37:52Z"},{"apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:conditions":{"k:{\"type\":\"Ready\"}":{".":{},"f:status":{},"f:type":{}}},"f:podIP":{},"f:podIPs":{".":{},"k:{\"ip\":\"\#(ip)\"}":{".":{},"f:ip":{}}}}},"manager":"kubelet","operation":"Update","subresource":"status","time":"2024-05-14T10:38:01Z"}],"name":"\#(name)","namespace":"\#(namespace)","ownerReferences":[{"apiVersion":"apps/v1","blockOwnerDeletion":true,"controller":true,"kind":"ReplicaSet","name":"web-7d9f8b6c5","uid":"0c1d2e3f"}],"resourceVersion":"\#(resourceVersion)","uid":"6bf1ce6b-2f47-5e50-84c1-\#(name)"},"spec":{"containers":[{"args":["--listen=:8080"],"env":[{"name":"LOG_LEVEL","value":"info"},{"name":"POD_IP","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"status.podIP"}}}],"image":"registry.example.com/web:1.24","imagePullPolicy":"IfNotPresent","livenessProbe":{"failureThreshold":3,"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"periodSeconds":10},"name":"main","ports":[{"containerPort":\#(containerPort),"name":"http","protocol":"TCP"},{"containerPort":9090,"name":"metrics","protocol":"TCP"}],"readinessProbe":{"httpGet":{"path":"/readyz","port":"http","scheme":"HTTP"},"periodSeconds":5},"resources":{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m"}},"volumeMounts":[{"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","name":"kube-api-access","readOnly":true}]}],"dnsPolicy":"ClusterFirst","nodeName":"node-a","restartPolicy":"Always","securityContext":{"fsGroup":2000},"tolerations":[{"effect":"NoExecute","key":"node.kubernetes.io/not-ready","operator":"Exists","tolerationSeconds":300}],"volumes":[{"name":"kube-api-access","projected":{"defaultMode":420,"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}}]}}]},"status":{"conditions":[{"lastProbeTime":null,"lastTransitionTime":"2024-05-14T10:37:52Z","status":"True","type":"Ready"}],"containerStatuses":[{"containerID":"containerd://8d3f","image":"registry.example.com/web:1.24","lastState":{},"name":"main","ready":true,"restartCount":0,"started":true,"state":{"running":{"startedAt":"2024-05-14T10:37:58Z"}}}],"hostIP":"172.18.0.2","hostIPs":[{"ip":"172.18.0.2"}],"phase":"Running","podIP":"\#(ip)","podIPs":[{"ip":"\#(ip)"}],"qosClass":"Burstable","startTime":"2024-05-14T10:37:52Z"}}
        """#
}

@Suite struct APIListTests {
    @Test("a PodList page: kind first, items without kind, continue and remainingItemCount")
    func podList() throws {
        let page = try list(#"""
            {"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"912345","continue":"eyJydiI6OTEyMzQ1fQ","remainingItemCount":250},
             "items":[
               {"metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web"},"resourceVersion":"101","uid":"u-1"},
                "spec":{"nodeName":"node-a","containers":[{"name":"c","ports":[{"name":"http","containerPort":8080}]}]},
                "status":{"phase":"Running","podIP":"10.244.1.5","podIPs":[{"ip":"10.244.1.5"}]}},
               {"metadata":{"name":"web-2","namespace":"shop","resourceVersion":"102"},"status":{"phase":"Pending"}}
             ]}
            """#)
        #expect(page.kind == "PodList")
        #expect(page.resourceVersion == "912345")
        #expect(page.continueToken == "eyJydiI6OTEyMzQ1fQ")
        #expect(page.remainingItemCount == 250)
        #expect(page.issues.isEmpty)
        #expect(page.items.map(\.resourceVersion) == ["101", "102"])
        #expect(page.items.map(\.uid) == ["u-1", nil])
        #expect(page.items.map { $0.object.kind } == ["Pod", "Pod"])
        let pod = try #require(page.items.first?.object.pod)
        #expect(pod.key == ObjectKey(namespace: "shop", name: "web-1"))
        #expect(pod.labels == ["app": "web"])
        #expect(pod.nodeName == "node-a")
        #expect(pod.ips.map(\.description) == ["10.244.1.5"])
        #expect(pod.ports == [ContainerPort(name: "http", number: 8080, proto: .tcp, field: "spec.containers[0].ports[0]")])
        #expect(page.items.last?.object.pod?.phase == "Pending")
        #expect(page.items.first?.issues == [])
    }

    @Test("the last page: no continue token (absent or empty), no remainingItemCount")
    func lastPage() throws {
        let absent = try list(#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[]}"#)
        #expect(absent.continueToken == nil)
        #expect(absent.remainingItemCount == nil)
        #expect(absent.items.isEmpty)
        let empty = try list(#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7","continue":""},"items":null}"#)
        #expect(empty.continueToken == nil)
        #expect(empty.resourceVersion == "7")
    }

    @Test("NamespaceList, NetworkPolicyList and NodeList pages read their items as the list's kind")
    func otherKinds() throws {
        let namespaces = try list(#"""
            {"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"50","continue":"next","remainingItemCount":1},
             "items":[{"metadata":{"name":"shop","labels":{"team":"a"},"resourceVersion":"3","uid":"ns-uid"},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}]}
            """#)
        #expect(namespaces.kind == "NamespaceList")
        #expect(namespaces.continueToken == "next")
        #expect(namespaces.remainingItemCount == 1)
        #expect(namespaces.items.map(\.object) == [.namespace(Namespace(name: "shop", labels: ["team": "a"]))])
        #expect(namespaces.items.first?.uid == "ns-uid")
        #expect(namespaces.items.first?.object.namespace == nil)

        let policies = try list(#"""
            {"kind":"NetworkPolicyList","apiVersion":"networking.k8s.io/v1","metadata":{"resourceVersion":"60"},
             "items":[{"metadata":{"name":"allow-web","namespace":"shop","resourceVersion":"9"},
                       "spec":{"podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"ports":[{"port":8080}]}],"policyTypes":["Ingress"]}}]}
            """#)
        #expect(policies.issues.isEmpty)
        let policy = try #require(policies.items.first?.object.policy)
        #expect(policy.key == ObjectKey(namespace: "shop", name: "allow-web"))
        #expect(policy.isolates == [.ingress])
        #expect(policy.ingress.first?.ports == [Policy.Port(proto: .tcp, range: .range(8080, 8080))])
        #expect(policies.items.first?.issues == [])
        #expect(policies.items.first?.object.namespace == "shop")

        let nodes = try list(#"""
            {"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"70"},
             "items":[{"metadata":{"name":"node-a","labels":{"kubernetes.io/hostname":"node-a"},"resourceVersion":"11"},
                       "spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24","fd00:1::/64"]},
                       "status":{"addresses":[{"type":"InternalIP","address":"172.18.0.2"},{"type":"Hostname","address":"node-a"}]}}]}
            """#)
        let node = try #require(nodes.items.first?.object.node)
        #expect(node.name == "node-a")
        #expect(node.labels == ["kubernetes.io/hostname": "node-a"])
        #expect(node.podCIDRs.map(\.description) == ["10.244.1.0/24", "fd00:1::/64"])
        #expect(node.addresses.map(\.description) == ["172.18.0.2"])
        #expect(nodes.items.first?.resourceVersion == "11")
    }

    @Test("an invalid item is kept with its issues; an undecodable one is left out with an issue")
    func invalidItems() throws {
        let page = try list(#"""
            {"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"5"},"items":[
              {"metadata":{"name":"bad-label","namespace":"shop","labels":{"app":"-web"},"resourceVersion":"1"}},
              {"metadata":{"name":"typed","namespace":"shop","resourceVersion":"2"},"spec":{"containers":[{"ports":[{"containerPort":"eighty"}]}]}},
              {"metadata":{"namespace":"shop","resourceVersion":"3"}},
              {"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"shop"}},
              7,
              {"metadata":{"name":"fine","namespace":"shop"}}
            ]}
            """#)
        #expect(page.items.map(\.object.name) == ["bad-label", "fine"])
        #expect(page.items.first?.issues.map(\.description) == [
            #"GET pods: Pod shop/bad-label: metadata.labels: Invalid value: "-web": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#,
        ])
        // A list item without a resourceVersion is kept (the list's is the one to watch from).
        #expect(page.items.last?.resourceVersion == "")
        #expect(page.issues.map(\.description) == [
            "GET pods: Pod shop/typed: spec.containers[0].ports[0].containerPort: has the wrong type, expected Int",
            "GET pods: Pod (list items[2], no metadata.name): metadata.name: is required but missing",
            "GET pods: Service shop/web: kind: is Service (apiVersion v1), expected Pod",
            "GET pods: list items[4]: is not an object (a mapping)",
        ])
    }

    @Test("a PodList of real-shaped pods decodes to what the file path decodes")
    func realShapedMatchesFilePath() throws {
        let pods = (0..<20).map { i in
            realShapedPod(name: "web-\(i)", ip: "10.244.\(i / 250).\(i % 250 + 1)", typeMeta: false, resourceVersion: "\(1000 + i)")
        } + [
            realShapedPod(name: "bad-label", ip: "10.244.9.1", labels: #"{"app":"web!"}"#, typeMeta: false),
            realShapedPod(name: "bad-port", ip: "10.244.9.2", containerPort: "\"http\"", typeMeta: false),
            realShapedPod(name: "bad-ip", ip: "10.244.9.300", typeMeta: false),
        ]
        let api = #"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"912345"},"items":["# + pods.joined(separator: ",") + "]}"
        let page = try list(api, source: "pods")
        let file = ManifestDecoder.decode(api, source: "pods")
        #expect(file.pods.count == 22)
        #expect(page.items.compactMap(\.object.pod) == file.pods)
        #expect(page.items.prefix(20).map(\.resourceVersion) == (0..<20).map { "\(1000 + $0)" })
        #expect(page.items.first?.uid == "6bf1ce6b-2f47-5e50-84c1-web-0")
        // The same issues, item issues and left-out items together.
        let apiIssues = page.items.flatMap(\.issues) + page.issues
        #expect(apiIssues.map(\.description).sorted() == file.issues.map(\.description).sorted())
        #expect(apiIssues.count == 3)
        #expect(page.issues.map(\.object) == ["Pod shop/bad-port"])

        // kubectl's order (keys sorted: items before kind, items naming their kind) gives the same page.
        let kubectl = #"{"apiVersion":"v1","items":["#
            + (0..<20).map { realShapedPod(name: "web-\($0)", ip: "10.244.0.\($0 + 1)", resourceVersion: "\(1000 + $0)") }.joined(separator: ",")
            + #"],"kind":"PodList","metadata":{"resourceVersion":"912345"}}"#
        let sorted = try list(kubectl, source: "pods")
        #expect(sorted.items.count == 20)
        #expect(sorted.items.compactMap(\.object.pod) == ManifestDecoder.decode(kubectl, source: "pods").pods)
        #expect(sorted.items.map(\.resourceVersion) == (0..<20).map { "\(1000 + $0)" })
    }

    @Test("items before the list's kind: read as the kinds they name, again as the list's when needed")
    func itemsBeforeKind() throws {
        let withoutKinds = try list(#"""
            {"apiVersion":"v1","items":[{"metadata":{"name":"a","namespace":"x","resourceVersion":"1"},"status":{"podIP":"10.0.0.1"}}],
             "kind":"PodList","metadata":{"resourceVersion":"9"}}
            """#)
        #expect(withoutKinds.issues.isEmpty)
        #expect(withoutKinds.items.first?.object.pod?.ips.map(\.description) == ["10.0.0.1"])
        let otherKind = try list(#"""
            {"apiVersion":"v1","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}},
                                        {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"x"}}],
             "kind":"PodList","metadata":{"resourceVersion":"9"}}
            """#)
        #expect(otherKind.items.map(\.object.name) == ["a"])
        #expect(otherKind.issues.map(\.description) == ["GET pods: Namespace x: kind: is Namespace (apiVersion v1), expected Pod"])
        let mixed = try list(#"""
            {"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[
              {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}},
              {"apiVersion":"v1","kind":"Node","metadata":{"name":"n"}},
              {"metadata":{"name":"no-kind"}}]}
            """#)
        #expect(mixed.items.map(\.object.kind) == ["Namespace", "Node"])
        #expect(mixed.issues.map(\.description) == ["GET pods: list items[2]: kind: is missing"])
    }

    @Test("a page that cannot be used is an error saying why")
    func envelopeErrors() {
        let cases: [(String, APIDecodeError.Code, String)] = [
            (#"{"apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#, .missingField, "GET pods: kind: is missing"),
            (#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#, .missingField,
             "GET pods: metadata.resourceVersion: is required but missing"),
            (#"{"kind":"PodList","apiVersion":"v1","items":[]}"#, .missingField, "GET pods: metadata.resourceVersion: is required but missing"),
            (#"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#, .wrongKind,
             "GET pods: kind: is ServiceList (apiVersion v1), expected NamespaceList, PodList, NetworkPolicyList or NodeList"),
            (#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1","continue":5},"items":[]}"#, .wrongType,
             "GET pods: metadata.continue: has the wrong type, expected String"),
            (#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1","remainingItemCount":"many"},"items":[]}"#, .wrongType,
             "GET pods: metadata.remainingItemCount: has the wrong type, expected Int"),
            (#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":{}}"#, .wrongType,
             "GET pods: items: has the wrong type, expected Sequence"),
            (#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":1},"items":[]}"#, .wrongType,
             "GET pods: metadata.resourceVersion: has the wrong type, expected String"),
            (#"[{"kind":"PodList"}]"#, .wrongType, "GET pods: is not a JSON object"),
            (#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"}}"#, .syntax,
             "GET pods: does not parse: invalid JSON at byte 105 (line 1, column 106): unexpected end of input, expected ',' or ']'"),
            (#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]} {}"#, .syntax,
             "GET pods: does not parse: invalid JSON at byte 83 (line 1, column 84): unexpected data after the JSON value"),
            ("", .syntax, "GET pods: does not parse: invalid JSON at byte 0 (line 1, column 1): unexpected end of input, expected a value"),
        ]
        for (json, code, message) in cases {
            let error = listError(json)
            #expect(error?.code == code, "\(json)")
            #expect(error?.description == message, "\(json)")
        }
        #expect(listError(#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"}}"#)?.syntax?.offset == 105)
    }

    @Test("a Status body where a list was expected is an error carrying the Status")
    func statusInsteadOfList() {
        let error = listError(#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#)
        #expect(error?.code == .status)
        #expect(error?.status?.code == 403)
        #expect(error?.description == #"GET pods: is a Status, not a list: 403 Forbidden: pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" at the cluster scope"#)
    }
}

@Suite struct APIWatchTests {
    @Test("ADDED, MODIFIED and DELETED events carry the object, its resourceVersion and issues")
    func objectEvents() throws {
        let added = try event(#"{"type":"ADDED","object":\#(realShapedPod(name: "web-1", resourceVersion: "4711"))}"# + "\n")
        guard case .added(let item) = added else { Issue.record("not ADDED: \(added)"); return }
        #expect(item.resourceVersion == "4711")
        #expect(item.uid == "6bf1ce6b-2f47-5e50-84c1-web-1")
        #expect(item.object.pod?.key == ObjectKey(namespace: "shop", name: "web-1"))
        #expect(item.object.pod?.ports.map(\.number) == [8080, 9090])
        #expect(item.issues.isEmpty)

        let modified = try event(#"{"type":"MODIFIED","object":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"Shop","resourceVersion":"12"}}}"#)
        guard case .modified(let namespace) = modified else { Issue.record("not MODIFIED: \(modified)"); return }
        #expect(namespace.object.namespaceObject?.name == "Shop")
        // Invalid, kept with its issues.
        #expect(namespace.issues.map(\.field) == ["metadata.name"])

        let deleted = try event(#"""
            {"type":"DELETED","object":{"kind":"NetworkPolicy","apiVersion":"networking.k8s.io/v1",
              "metadata":{"name":"deny","namespace":"shop","resourceVersion":"13","deletionTimestamp":"2024-05-14T10:37:52Z"},"spec":{"podSelector":{}}}}
            """#)
        #expect(deleted == .deleted(APIItem(
            object: .networkPolicy(Policy(validating: NetworkPolicy(namespace: "shop", name: "deny", spec: NetworkPolicy.Spec()))),
            resourceVersion: "13")))

        let node = try event(#"""
            {"type":"ADDED","object":{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-b","resourceVersion":"14","uid":"n-uid"},
              "spec":{"podCIDR":"10.244.2.0/24"},"status":{"addresses":[{"type":"ExternalIP","address":"203.0.113.7"},{"type":"InternalIP","address":"172.18.0.3"}]}}}
            """#)
        guard case .added(let nodeItem) = node else { Issue.record("not ADDED: \(node)"); return }
        #expect(nodeItem.object.node?.podCIDRs.map(\.description) == ["10.244.2.0/24"])
        #expect(nodeItem.object.node?.addresses.map(\.description) == ["203.0.113.7", "172.18.0.3"])
        #expect(nodeItem.object.node?.internalIPs.map(\.description) == ["172.18.0.3"])
        #expect(nodeItem.uid == "n-uid")
    }

    @Test("object before type is read once the type is known")
    func objectFirst() throws {
        let deleted = try event(#"{"object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"x","resourceVersion":"3"}},"type":"DELETED"}"#)
        guard case .deleted(let item) = deleted else { Issue.record("not DELETED: \(deleted)"); return }
        #expect(item.object.pod?.key == ObjectKey(namespace: "x", name: "a"))
        let bookmark = try event(#"{"object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"77"}},"type":"BOOKMARK"}"#)
        #expect(bookmark == .bookmark(resourceVersion: "77"))
    }

    @Test("BOOKMARK carries only a resourceVersion")
    func bookmark() throws {
        let bookmark = try event(#"""
            {"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"912400","creationTimestamp":null,"annotations":{"k8s.io/initial-events-end":"true"}},"spec":{"containers":null},"status":{}}}
            """#)
        #expect(bookmark == .bookmark(resourceVersion: "912400"))
    }

    @Test("ERROR carries the Status: 410 too old resource version")
    func error() throws {
        let expired = try event(#"""
            {"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 912345 (912400)","reason":"Expired","code":410}}
            """#)
        #expect(expired == .error(APIStatus(code: 410, reason: "Expired", message: "too old resource version: 912345 (912400)")))
        if case .error(let status) = expired {
            #expect(status.description == "410 Expired: too old resource version: 912345 (912400)")
        }
    }

    @Test("malformed events are errors saying what is wrong")
    func malformed() {
        let pod = #"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"x","resourceVersion":"3"}}"#
        let cases: [(String, APIDecodeError.Code, String)] = [
            (#"{"object":\#(pod)}"#, .missingField, "watch pods: type: is missing"),
            (#"{"type":"ADDED"}"#, .missingField, "watch pods: object: is missing"),
            (#"{"type":"CREATED","object":\#(pod)}"#, .unknownEventType,
             #"watch pods: type: is "CREATED", expected ADDED, MODIFIED, DELETED, BOOKMARK or ERROR"#),
            (#"{"type":1,"object":\#(pod)}"#, .wrongType, "watch pods: type: has the wrong type, expected String"),
            (#"{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"x"}}}"#, .missingField,
             "watch pods: Pod x/a: metadata.resourceVersion: is required but missing"),
            (#"{"type":"ADDED","object":{"kind":"Service","apiVersion":"v1","metadata":{"name":"web","namespace":"x","resourceVersion":"3"}}}"#,
             .wrongKind, "watch pods: Service x/web: kind: is Service (apiVersion v1), expected Namespace, Pod, NetworkPolicy (networking.k8s.io) or Node"),
            (#"{"type":"ADDED","object":{"kind":"NetworkPolicy","apiVersion":"crd.example.com/v1","metadata":{"name":"p","namespace":"x","resourceVersion":"3"}}}"#,
             .wrongKind, "watch pods: NetworkPolicy x/p: kind: is NetworkPolicy (apiVersion crd.example.com/v1), expected Namespace, Pod, NetworkPolicy (networking.k8s.io) or Node"),
            (#"{"type":"MODIFIED","object":{"apiVersion":"v1","metadata":{"name":"a","namespace":"x","resourceVersion":"3"}}}"#, .missingField,
             "watch pods: object: kind: is missing"),
            (#"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","namespace":"x","resourceVersion":"3"},"status":{"podIPs":"10.0.0.1"}}}"#,
             .undecodableObject, "watch pods: Pod x/a: status.podIPs: has the wrong type, expected Sequence"),
            (#"{"type":"DELETED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"namespace":"x","resourceVersion":"3"}}}"#,
             .undecodableObject, "watch pods: Pod (object, no metadata.name): metadata.name: is required but missing"),
            (#"{"type":"ADDED","object":"Pod"}"#, .undecodableObject, "watch pods: object: is not an object (a mapping)"),
            (#"{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{}}}"#, .missingField,
             "watch pods: object.metadata.resourceVersion: is required but missing"),
            (#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":5}}}"#, .wrongType,
             "watch pods: object.metadata.resourceVersion: has the wrong type, expected String"),
            (#"{"type":"ERROR","object":[]}"#, .wrongType, "watch pods: object: has the wrong type, expected Mapping (a Status)"),
            (#"["ADDED"]"#, .wrongType, "watch pods: is not a JSON object"),
            (#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a""#, .syntax,
             "watch pods: does not parse: invalid JSON at byte 61 (line 1, column 62): unexpected end of input, expected ',' or '}'"),
            (#"{"type":"ADDED","object":\#(pod)}{"type":"ADDED","object":\#(pod)}"#, .syntax,
             "watch pods: does not parse: invalid JSON at byte 120 (line 1, column 121): unexpected data after the JSON value"),
        ]
        for (json, code, message) in cases {
            let error = eventError(json)
            #expect(error?.code == code, "\(json)")
            #expect(error?.description == message, "\(json)")
        }
    }
}

@Suite struct APINodeTests {
    /// A NodeList page of one node with `spec` and `status` as given.
    func decodeNode(spec: String, status: String = "{}", name: String = "node-a") throws -> (Node?, [ManifestIssue]) {
        let page = try list(#"""
            {"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"1"},
             "items":[{"metadata":{"name":"\#(name)","resourceVersion":"2"},"spec":\#(spec),"status":\#(status)}]}
            """#, source: "GET nodes")
        #expect(page.issues.isEmpty)
        return (page.items.first?.object.node, page.items.first?.issues ?? [])
    }

    @Test("podCIDRs, else podCIDR; repeats dropped")
    func podCIDRs() throws {
        let (both, _) = try decodeNode(spec: #"{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24","fd00:1::/64","10.244.1.0/24"]}"#)
        #expect(both?.podCIDRs == [CIDR("10.244.1.0/24")!, CIDR("fd00:1::/64")!])
        let (single, _) = try decodeNode(spec: #"{"podCIDR":"10.244.3.0/24"}"#)
        #expect(single?.podCIDRs == [CIDR("10.244.3.0/24")!])
        let (emptyList, _) = try decodeNode(spec: #"{"podCIDR":"10.244.4.0/24","podCIDRs":[]}"#)
        #expect(emptyList?.podCIDRs == [CIDR("10.244.4.0/24")!])
        let (none, issues) = try decodeNode(spec: "{}")
        #expect(none?.podCIDRs == [])
        #expect(issues.isEmpty)
    }

    @Test("addresses: InternalIP and ExternalIP that parse, in status order")
    func addresses() throws {
        let (node, issues) = try decodeNode(spec: "{}", status: #"""
            {"addresses":[{"type":"Hostname","address":"node-a"},{"type":"InternalIP","address":"172.18.0.2"},
                          {"type":"InternalIP","address":"fd00::2"},{"type":"ExternalIP","address":"203.0.113.9"},
                          {"type":"InternalDNS","address":"node-a.internal"},{"type":"InternalIP","address":"172.18.0.2"}]}
            """#)
        #expect(node?.addresses.map(\.description) == ["172.18.0.2", "fd00::2", "203.0.113.9"])
        #expect(node?.internalIPs.map(\.description) == ["172.18.0.2", "fd00::2"])
        #expect(issues.isEmpty)
    }

    @Test("invalid pod CIDRs, addresses and names are issues; the node is kept")
    func invalid() throws {
        let (node, issues) = try decodeNode(
            spec: #"{"podCIDRs":["10.244.1.0/24","10.244.1.0/33"]}"#,
            status: #"{"addresses":[{"type":"InternalIP","address":"172.18.0.999"},{"type":"InternalIP","address":"172.18.0.2"}]}"#,
            name: "Node_A")
        #expect(node?.podCIDRs.map(\.description) == ["10.244.1.0/24"])
        #expect(node?.addresses.map(\.description) == ["172.18.0.2"])
        #expect(issues.map(\.field) == ["metadata.name", "spec.podCIDRs[1]", "status.addresses[0].address"])
        #expect(issues.dropFirst().map(\.description) == [
            #"GET nodes: Node Node_A: spec.podCIDRs[1]: Invalid value: "10.244.1.0/33": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"#,
            #"GET nodes: Node Node_A: status.addresses[0].address: Invalid value: "172.18.0.999": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
        ])
        let (fallback, fallbackIssues) = try decodeNode(spec: #"{"podCIDR":"10.244.1.0"}"#)
        #expect(fallback?.podCIDRs == [])
        #expect(fallbackIssues.map(\.field) == ["spec.podCIDR"])
    }

    @Test("a Node field of the wrong type leaves the node out of the page")
    func undecodable() throws {
        let page = try list(#"""
            {"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"1"},
             "items":[{"metadata":{"name":"a"},"spec":{"podCIDRs":"10.244.1.0/24"}},
                      {"metadata":{"name":"b"},"status":{"addresses":[{"type":"InternalIP"}]}}]}
            """#)
        #expect(page.items.isEmpty)
        #expect(page.issues.map(\.description) == [
            "GET pods: Node a: spec.podCIDRs: has the wrong type, expected Sequence",
            "GET pods: Node b: status.addresses[0].address: is required but missing",
        ])
    }

    @Test("manifest files still skip Nodes with a note")
    func filesSkipNodes() {
        let set = ManifestDecoder.decode(#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n"},"spec":{"podCIDRs":5}}"#, source: "in.json")
        #expect(set.nodes.isEmpty)
        #expect(set.issues.map(\.description) == ["in.json: Node n: skipped: Picket does not read this kind"])
    }
}

@Suite struct APIStatusTests {
    @Test("Status bodies of error responses", arguments: [
        (#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
         APIStatus(code: 401, reason: "Unauthorized", message: "Unauthorized"), "401 Unauthorized: Unauthorized"),
        (#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nodes \"node-a\" is forbidden: User \"system:serviceaccount:kube-system:picket\" cannot get resource \"nodes\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"name":"node-a","kind":"nodes"},"code":403}"#,
         APIStatus(code: 403, reason: "Forbidden", message: #"nodes "node-a" is forbidden: User "system:serviceaccount:kube-system:picket" cannot get resource "nodes" in API group "" at the cluster scope"#),
         #"403 Forbidden: nodes "node-a" is forbidden: User "system:serviceaccount:kube-system:picket" cannot get resource "nodes" in API group "" at the cluster scope"#),
        (#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.","reason":"Expired","metadata":{"continue":"abc"},"code":410}"#,
         APIStatus(code: 410, reason: "Expired", message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."),
         "410 Expired: The provided continue parameter is too old"),
        (#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"causes":[{"message":"x"}],"retryAfterSeconds":1},"code":429}"#,
         APIStatus(code: 429, reason: "TooManyRequests", message: "Too many requests, please try again later.", retryAfterSeconds: 1),
         "429 TooManyRequests: Too many requests, please try again later."),
        (#"{"kind":"Status","code":"500","reason":7,"message":"line one\nline two"}"#, APIStatus(code: 0, reason: "", message: "line one\nline two"),
         #"0: line one\nline two"#),
    ] as [(String, APIStatus, String)])
    func statuses(body: String, expected: APIStatus, line: String) {
        let decoded = status(body)
        #expect(decoded == expected)
        #expect(decoded?.description.hasPrefix(line) == true)
    }

    @Test("bodies that are not a Status", arguments: [
        #"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a"}}"#,
        #"{"apiVersion":"v1","code":403}"#,
        #"[{"kind":"Status"}]"#,
        #"{"kind":"Status","code":403"#,
        #"{"kind":"Status"} trailing"#,
        "<html><body>502 Bad Gateway</body></html>",
        "",
    ])
    func notStatuses(body: String) {
        #expect(status(body) == nil)
    }
}
