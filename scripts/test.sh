#!/usr/bin/env bash
# One command: install the dependencies, build, and run the whole test suite
# (unit and end-to-end), then the unit tests again under ASan/UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh build
bash scripts/build.sh build-asan -DMA_SANITIZE=ON
status=0
(cd build && ctest --output-on-failure --timeout 900) || status=1
echo "== unit tests under ASan/UBSan"
(cd build-asan && ctest --output-on-failure -R '^unit/') || status=1
exit $status
