// picket-bench: compile benchmark on synthetic clusters. See `BenchOptions.usage` and
// Benchmark.swift; run with
//   swift build -c release --product picket-bench && .build/release/picket-bench [--sizes 10k]
import Foundation

// `picket-bench cost ...`: the data-path cost of one connection, counted from the rules.
if CommandLine.arguments.dropFirst().first == "cost" {
    exit(CostCommand.run(Array(CommandLine.arguments.dropFirst(2))))
}

// `picket-bench place ...`: the name that puts a connection's group deepest in its dispatch tree.
if CommandLine.arguments.dropFirst().first == "place" {
    exit(PlaceCommand.run(Array(CommandLine.arguments.dropFirst(2))))
}

// `picket-bench informer ...`: informer initial sync time and store memory.
if CommandLine.arguments.dropFirst().first == "informer" {
    exit(InformerBench.run(Array(CommandLine.arguments.dropFirst(2))))
}

// `picket-bench daemon ...`: the `picket daemon` process: start-up, memory, idle CPU, event to
// enforcement, bursts.
if CommandLine.arguments.dropFirst().first == "daemon" {
    exit(DaemonBench.run(Array(CommandLine.arguments.dropFirst(2))))
}

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
