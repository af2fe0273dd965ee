#!/usr/bin/env bash
# One command: install the dependencies, build, start the bundled sample
# program (examples/leaky_service.py: a service whose cache leaks) and run
# the user's story on it: memattach PID shows every thread's stack, tracks
# every allocation for a few seconds (Ctrl-C, sent here by `timeout`),
# detaches, and says which Python lines hold the memory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build
py=/usr/bin/python3
out=$(mktemp -d)
$py examples/leaky_service.py >"$out/service.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 50); do grep -q leaky_service "$out/service.log" && break; sleep 0.1; done
echo "demo: examples/leaky_service.py runs as pid $pid"
echo
echo "\$ memattach info $pid"
./build/memattach info "$pid"
echo
echo "\$ memattach heap --top 5 $pid"
./build/memattach heap -q --top 5 "$pid"
echo
echo "\$ memattach $pid        (Ctrl-C after 5 seconds)"
timeout -s INT 5 ./build/memattach -o "$out/demo.cap" "$pid" || true
echo
echo "\$ memattach report demo.cap --view total --top 5"
./build/memattach report "$out/demo.cap" --view total --top 5
echo
echo "\$ memattach stacks --native $pid | head -30"
./build/memattach stacks --native "$pid" | head -30
kill -0 "$pid" && echo "demo: the service is still running, untouched"
