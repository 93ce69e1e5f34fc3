// The simdjson measurement behind the README's choice of decoder: the same projection as
// Picket's JSON path (metadata name/namespace/labels; spec nodeName, hostNetwork,
// containers[].ports[]; status phase, podIP, podIPs) with simdjson's On-Demand API, into
// std::string values, on the PodList `picket-bench --decode --export-json FILE` writes.
// Not part of the build:
//   apt-get install libsimdjson-dev
//   g++ -O3 -std=c++17 Benchmarks/simdjson/probe.cpp -lsimdjson -o /tmp/simdjson-probe && /tmp/simdjson-probe FILE
#include <simdjson.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

using namespace simdjson;

struct Port { std::string name; int64_t number = 0; std::string proto; };
struct Pod {
    std::string name, ns, node, phase, podIP;
    std::map<std::string, std::string> labels;
    bool hostNetwork = false;
    std::vector<Port> ports;
    std::vector<std::string> ips;
};

static std::vector<Pod> decode(ondemand::parser &parser, padded_string &json) {
    std::vector<Pod> pods;
    ondemand::document doc = parser.iterate(json);
    for (ondemand::object item : doc["items"].get_array()) {
        Pod pod;
        for (auto field : item) {
            std::string_view key = field.unescaped_key();
            if (key == "metadata") {
                for (auto m : field.value().get_object()) {
                    std::string_view k = m.unescaped_key();
                    if (k == "name") pod.name = std::string(std::string_view(m.value()));
                    else if (k == "namespace") pod.ns = std::string(std::string_view(m.value()));
                    else if (k == "labels")
                        for (auto l : m.value().get_object())
                            pod.labels[std::string(std::string_view(l.unescaped_key()))] = std::string(std::string_view(l.value()));
                }
            } else if (key == "spec") {
                for (auto s : field.value().get_object()) {
                    std::string_view k = s.unescaped_key();
                    if (k == "nodeName") pod.node = std::string(std::string_view(s.value()));
                    else if (k == "hostNetwork") pod.hostNetwork = bool(s.value());
                    else if (k == "containers")
                        for (ondemand::object c : s.value().get_array())
                            for (auto cf : c) {
                                if (std::string_view(cf.unescaped_key()) != "ports") continue;
                                for (ondemand::object p : cf.value().get_array()) {
                                    Port port;
                                    for (auto pf : p) {
                                        std::string_view pk = pf.unescaped_key();
                                        if (pk == "name") port.name = std::string(std::string_view(pf.value()));
                                        else if (pk == "containerPort") port.number = int64_t(pf.value());
                                        else if (pk == "protocol") port.proto = std::string(std::string_view(pf.value()));
                                    }
                                    pod.ports.push_back(port);
                                }
                            }
                }
            } else if (key == "status") {
                for (auto s : field.value().get_object()) {
                    std::string_view k = s.unescaped_key();
                    if (k == "phase") pod.phase = std::string(std::string_view(s.value()));
                    else if (k == "podIP") pod.podIP = std::string(std::string_view(s.value()));
                    else if (k == "podIPs")
                        for (ondemand::object ip : s.value().get_array()) pod.ips.push_back(std::string(std::string_view(ip["ip"])));
                }
            }
        }
        pods.push_back(std::move(pod));
    }
    return pods;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s PODLIST.json\n", argv[0]); return 2; }
    padded_string json = padded_string::load(argv[1]);
    ondemand::parser parser;
    std::vector<double> ms;
    size_t count = 0;
    for (int run = 0; run < 7; run++) {
        auto start = std::chrono::steady_clock::now();
        count = decode(parser, json).size();
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(ms.begin(), ms.end());
    printf("simdjson 3.0.1 (%s): %zu pods, %.1f MB, median %.1f ms, %.0f MB/s\n",
           simdjson::get_active_implementation()->name().c_str(), count, json.size() / 1e6, ms[3], json.size() / 1e6 / (ms[3] / 1e3));
}
