// swift-tools-version:6.0
import PackageDescription

/// One set of compiler settings for every target: Swift 6 language mode, strict concurrency.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "picket",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "picket", targets: ["picket"]),
        .library(name: "PolicyCompiler", targets: ["PolicyCompiler"]),
        .library(name: "KubeModel", targets: ["KubeModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    ],
    targets: [
        // Cluster model: Codable values for the fields Picket reads, manifest decoding,
        // label selectors. No knowledge of iptables.
        .target(
            name: "KubeModel",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // The pure compiler: (ClusterSnapshot, node) -> Ruleset -> restore text. No I/O.
        .target(
            name: "PolicyCompiler",
            dependencies: ["KubeModel"],
            swiftSettings: swiftSettings
        ),
        // An independent evaluator of NetworkPolicy semantics: (snapshot, flow) -> verdict and
        // reasons. Shares the model with the compiler, never its rule generation.
        .target(
            name: "PolicyEvaluator",
            dependencies: ["KubeModel"],
            swiftSettings: swiftSettings
        ),
        // libipset, in-process: a C shim with custom error/print handlers (libipset's defaults
        // print and exit) and a Swift session over it.
        .target(
            name: "CIPSet",
            path: "Sources/CIPSet",
            linkerSettings: [.linkedLibrary("ipset")]
        ),
        .target(
            name: "IPSetKit",
            dependencies: ["CIPSet"],
            swiftSettings: swiftSettings
        ),
        // libnetfilter_conntrack, in-process: delete conntrack entries of given addresses.
        .target(
            name: "CConntrack",
            path: "Sources/CConntrack",
            linkerSettings: [.linkedLibrary("netfilter_conntrack")]
        ),
        .target(
            name: "ConntrackKit",
            dependencies: ["CConntrack", "KubeModel"],
            swiftSettings: swiftSettings
        ),
        // Runs a program to completion with posix_spawn and a deadline (iptables-restore, exec
        // credential plugins).
        .target(
            name: "ToolRunner",
            swiftSettings: swiftSettings
        ),
        // libcurl: a C shim of typed, non-variadic wrappers over curl_easy_setopt/getinfo.
        .target(
            name: "CCurl",
            path: "Sources/CCurl",
            linkerSettings: [.linkedLibrary("curl")]
        ),
        // The Kubernetes API client: kubeconfig and in-cluster configuration, credentials
        // (tokens, client certificates, exec plugins), requests over libcurl with retries, and
        // informers (paginated list, then watch) keeping the projected model.
        .target(
            name: "KubeClient",
            dependencies: ["KubeModel", "CCurl", "ToolRunner", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // Informer events keyed by object -> ClusterSnapshot values.
        .target(
            name: "ClusterStore",
            dependencies: ["KubeModel", "KubeClient"],
            swiftSettings: swiftSettings
        ),
        // The daemon: informers, the coalescing sync loop owning the executor, health and the
        // status server. Logging and metrics through their APIs only: `picket` picks backends.
        .target(
            name: "Daemon",
            dependencies: [
                "KubeModel", "KubeClient", "ClusterStore", "PolicyCompiler", "Executor", "IPSetKit",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // The only module that changes the kernel: diffs a Ruleset against what the node holds
        // and applies the difference (libipset in-process, iptables-restore --noflush).
        .target(
            name: "Executor",
            dependencies: ["KubeModel", "PolicyCompiler", "IPSetKit", "ConntrackKit", "ToolRunner"],
            swiftSettings: swiftSettings
        ),
        // The command-line tool.
        .executableTarget(
            name: "picket",
            dependencies: [
                "KubeModel",
                "PolicyCompiler",
                "PolicyEvaluator",
                "Executor",
                "KubeClient",
                "Daemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Synthetic-cluster benchmark for `make bench` (release build).
        .executableTarget(
            name: "picket-bench",
            dependencies: ["KubeModel", "PolicyCompiler", "Executor", "IPSetKit", "KubeClient", "KubeTestSupport", "ToolRunner"],
            path: "Benchmarks/picket-bench",
            swiftSettings: swiftSettings
        ),
        // libFuzzer target over the JSON manifest path (`make fuzz-json`); a replay and seed tool
        // in a normal build.
        .executableTarget(
            name: "picket-fuzz-json",
            dependencies: ["KubeModel"],
            path: "Fuzz/json",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "picketTests",
            dependencies: ["picket"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KubeModelTests",
            dependencies: ["KubeModel", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PolicyCompilerTests",
            dependencies: ["KubeModel", "PolicyCompiler"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ExecutorTests",
            dependencies: ["Executor", "KubeModel", "PolicyCompiler", "IPSetKit"],
            swiftSettings: swiftSettings
        ),
        // The test API server (Tests/APIServer) from Swift, for the API client and daemon tests.
        .target(
            name: "KubeTestSupport",
            dependencies: ["KubeClient", "ToolRunner"],
            path: "Tests/KubeTestSupport",
            swiftSettings: swiftSettings
        ),
        // The API client against the test API server over HTTPS on 127.0.0.1.
        .testTarget(
            name: "KubeClientTests",
            dependencies: ["KubeClient", "KubeModel", "ToolRunner", "KubeTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ClusterStoreTests",
            dependencies: ["ClusterStore", "KubeClient", "KubeModel"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IPSetKitTests",
            dependencies: ["IPSetKit"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ConntrackKitTests",
            dependencies: ["ConntrackKit", "KubeModel"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PolicyEvaluatorTests",
            dependencies: ["KubeModel", "PolicyEvaluator"],
            swiftSettings: swiftSettings
        ),
        // Enforcement proven in a real kernel: network-namespace clusters, real packets.
        .testTarget(
            name: "KernelTests",
            dependencies: ["KubeModel", "PolicyCompiler", "PolicyEvaluator", "Executor", "ToolRunner", "KubeClient", "KubeTestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
