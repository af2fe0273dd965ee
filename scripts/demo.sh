#!/usr/bin/env bash
# One command: install the dependencies, build, start the bundled sample
# program (examples/leaky_service.py) and look into it with memattach.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build
py=/usr/bin/python3
fifo=$(mktemp -u)
mkfifo "$fifo"
$py examples/leaky_service.py >"$fifo" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$fifo"' EXIT
read -r ready <"$fifo"
echo "demo: started $ready (pid $pid)"
sleep 1
echo
echo "\$ memattach info $pid"
./build/memattach info "$pid"
echo
echo "\$ memattach stacks $pid"
./build/memattach stacks "$pid"
echo "\$ memattach stacks --native $pid | head -40"
./build/memattach stacks --native "$pid" | head -40
