import Foundation
#if canImport(Glibc)
import Glibc
#endif
import KubeClient
import KubeModel
import KubeTestSupport

// `picket-bench informer [--sizes 10k,50k]`: the informers' initial sync against the test API
// server over HTTPS on 127.0.0.1. The synthetic cluster (real-shaped pods, ~6 KB each as
// `kubectl get -o json` prints them, with its namespaces and policies) is loaded into the server;
// then informers for Pods, Namespaces and NetworkPolicies start together (pages of 500, as the
// daemon lists) and the time until all three have synced is taken, with the memory their stores
// hold: resident memory after the sync minus before it (malloc_trim first, so freed list pages do
// not count), and the pods' share of it.

enum InformerBench {
    /// Runs the benchmark for each size; the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        var sizes = ClusterSize.all.filter { $0.label != "1k" }
        var rest = arguments[...]
        while let argument = rest.popFirst() {
            guard argument == "--sizes", let value = rest.popFirst() else {
                printErr("usage: picket-bench informer [--sizes 1k,10k,50k]")
                return 2
            }
            sizes = value.split(separator: ",").compactMap { label in ClusterSize.all.first { $0.label == label } }
        }
        print("Informer initial sync against the test API server (HTTPS, 127.0.0.1, pages of 500, real-shaped pods):")
        print("| cluster | pods JSON | server load | sync (3 informers) | pods/s | MB/s | store RSS | per pod |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for size in sizes {
            var generator = ClusterGenerator()
            let cluster = generator.cluster(size)
            let list = ClusterExport.list(cluster, realShaped: true)
            let podBytes = ClusterExport.podList(cluster, count: cluster.pods.count).count
            let loadStart = ContinuousClock.now
            let server: TestAPIServer
            do {
                server = try TestAPIServer(objects: list)
            } catch {
                printErr("picket-bench: informer: \(error)")
                return 1
            }
            let loaded = ContinuousClock.now - loadStart
            defer { server.stop() }
            let client = APIClient(connection: server.connection())
            var options = InformerOptions()
            options.pageSize = 500
            _ = malloc_trim(0)
            let before = residentBytes()
            let start = ContinuousClock.now
            let informers = [APIResource.pods, .namespaces, .networkPolicies].map { resource in
                Informer(client: client, resource: resource, options: options) { _ in }
            }
            for informer in informers { informer.start() }
            let synced = informers.allSatisfy { $0.waitForSync(timeout: .seconds(600)) }
            let took = ContinuousClock.now - start
            _ = malloc_trim(0)
            let after = residentBytes()
            let pods = informers[0].items.count
            guard synced, pods == cluster.pods.count else {
                printErr("picket-bench: informer: \(size.label): synced \(synced), \(pods) of \(cluster.pods.count) pods; \(informers.map { $0.status.lastError?.description ?? "" })")
                return 1
            }
            let seconds = Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18
            let store = max(0, after - before)
            print("| \(size.label) pods / \(Format.count(cluster.policies.count)) policies | \(mb(podBytes)) MB | \(String(format: "%.1f", loaded.milliseconds / 1000)) s "
                + "| \(String(format: "%.0f", took.milliseconds)) ms | \(Format.count(Int(Double(pods) / seconds))) "
                + "| \(String(format: "%.0f", Double(podBytes) / 1e6 / seconds)) | \(mb(store)) MB | \(store / max(pods, 1)) B |")
            for informer in informers { informer.stop() }
        }
        return 0
    }

    private static func mb(_ bytes: Int) -> String { String(format: "%.1f", Double(bytes) / 1e6) }

    /// Resident memory now, from /proc/self/statm.
    private static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// glibc's malloc_trim (malloc.h is not in the Glibc module): returns freed heap to the system,
/// so that resident memory measures what is still held.
@_silgen_name("malloc_trim")
private func malloc_trim(_ pad: Int) -> Int32
