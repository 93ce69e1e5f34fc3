import ArgumentParser
import Foundation
import KubeClient
import KubeModel

/// Where a live cluster is: a kubeconfig and context, as kubectl reads them.
struct ClusterOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Read the cluster from the API server of this kubeconfig instead of manifests.",
        discussion: "As kubectl: the file's current context unless --context names another. With --context alone, $KUBECONFIG or ~/.kube/config.",
        valueName: "file"))
    var kubeconfig: String?

    @Option(help: ArgumentHelp("The kubeconfig context to use (default: its current context).", valueName: "name"))
    var context: String?

    /// Whether a live cluster was asked for.
    var isLive: Bool { kubeconfig != nil || context != nil }

    /// Lists Namespaces, Pods and NetworkPolicies from the API server (one paginated list
    /// each, side by side), as a manifest set whose issues name the server. A failure to reach
    /// or read the cluster is one stderr line naming the server and the reason, then exit 2.
    func load() throws -> ManifestSet {
        let connection: ClusterConnection
        do {
            connection = try ConnectionResolver.fromKubeconfig(path: kubeconfig, context: context, environment: ProcessInfo.processInfo.environment)
        } catch {
            printError("picket: error: \(error)")
            throw ExitCode(2)
        }
        let client = APIClient(connection: connection, userAgent: "picket/\(Picket.configuration.version)")
        let resources: [APIResource] = [.namespaces, .pods, .networkPolicies]
        let pages = ListResults(count: resources.count)
        let group = DispatchGroup()
        for (index, resource) in resources.enumerated() {
            group.enter()
            // Threads of their own: the transfers block.
            let thread = Thread {
                let result: Result<ListPage, APIError>
                do throws(APIError) {
                    result = .success(try client.list(resource))
                } catch {
                    result = .failure(error)
                }
                pages.set(index, result)
                group.leave()
            }
            thread.start()
        }
        group.wait()
        var set = ManifestSet()
        var failed = false
        for result in pages.all {
            switch result {
            case .success(let page): set.append(contentsOf: ManifestSet(page))
            case .failure(let error):
                printError("picket: error: \(error)")
                failed = true
            case nil: failed = true
            }
        }
        if failed { throw ExitCode(2) }
        return set
    }
}

/// The results of lists running side by side, one slot each.
private final class ListResults: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Result<ListPage, APIError>?]

    init(count: Int) { values = Array(repeating: nil, count: count) }

    func set(_ index: Int, _ value: Result<ListPage, APIError>) {
        lock.withLock { values[index] = value }
    }

    var all: [Result<ListPage, APIError>?] { lock.withLock { values } }
}

extension ManifestSet {
    /// The objects of a list page, with their issues.
    init(_ page: ListPage) {
        self.init()
        issues = page.issues
        for item in page.items {
            issues += item.issues
            switch item.object {
            case .namespace(let namespace): namespaces.append(namespace)
            case .pod(let pod): pods.append(pod)
            case .networkPolicy(let policy): policies.append(policy)
            case .node: break
            }
        }
    }

    /// This set with `overlay`'s objects laid over it: an object of the same kind, namespace and
    /// name is replaced, others are added (the CI question: the cluster as it would be after
    /// applying these manifests).
    func overlaid(with overlay: ManifestSet) -> ManifestSet {
        var result = ManifestSet()
        let namespaceNames = Set(overlay.namespaces.map(\.name))
        let podKeys = Set(overlay.pods.map(\.key))
        let policyKeys = Set(overlay.policies.map(\.key))
        result.namespaces = namespaces.filter { !namespaceNames.contains($0.name) } + overlay.namespaces
        result.pods = pods.filter { !podKeys.contains($0.key) } + overlay.pods
        result.policies = policies.filter { !policyKeys.contains($0.key) } + overlay.policies
        result.issues = issues + overlay.issues
        return result
    }
}
