import KubeClient
import Testing

@Suite struct ConnectionTests {
    @Test func serverLosesTrailingSlashes() {
        #expect(ClusterConnection(server: "https://10.0.0.1:6443//", origin: "test").server == "https://10.0.0.1:6443")
        #expect(ClusterConnection(server: "https://h/prefix/", origin: "test").server == "https://h/prefix")
    }
}
