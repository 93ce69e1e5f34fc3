// picket-bench: compile benchmark on synthetic clusters. See `BenchOptions.usage` and
// Benchmark.swift; run with
//   swift build -c release --product picket-bench && .build/release/picket-bench [--sizes 10k]
import Foundation

switch BenchOptions.parse(Array(CommandLine.arguments.dropFirst())) {
case .success(let options):
    exit(Benchmark(options: options).run())
case .failure(let error):
    if let message = error.message {
        printErr("picket-bench: error: \(message)\n\n\(BenchOptions.usage)")
        exit(2)
    }
    print(BenchOptions.usage)
    exit(0)
}
