// swift-tools-version:6.0
// The libFuzzer target over the manifest decoder, kept out of the main package so that a plain
// `swift build` never needs the fuzzer runtime. Built and run by `make fuzz` (see the Makefile):
//   swift build --package-path Fuzz --scratch-path .build-fuzz -c debug \
//     -Xswiftc -sanitize=fuzzer,address --product picket-fuzz-manifests
import PackageDescription

let package = Package(
    name: "picket-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "picket", path: "..")],
    targets: [
        .executableTarget(
            name: "picket-fuzz-manifests",
            dependencies: [
                .product(name: "KubeModel", package: "picket"),
                .product(name: "PolicyCompiler", package: "picket"),
            ],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ]
)
