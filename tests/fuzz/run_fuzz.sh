#!/bin/sh
# SPDX-License-Identifier: MIT
# A short fuzz run of one fuzzer (tests/fuzz/fuzz_NAME.c), part of the test
# suite.  usage: run_fuzz.sh FUZZER CORPUS_DIR SECONDS [NAME [MAX_LEN]]
# The committed corpus is only read; new inputs go to a temporary folder.
# Exit 77 (skipped) when the fuzzer was not built (clang or its fuzzer
# runtime, libclang-rt-14-dev, missing).
fuzzer=$1 corpus=$2 secs=${3:-30} name=${4:-capture} maxlen=${5:-65536}
if [ ! -x "$fuzzer" ]; then
	echo "skip fuzz/$name: the fuzzer was not built (needs clang and" \
		"libclang-rt-14-dev: scripts/install-deps.sh)"
	echo "0 passed, 0 failed, 1 skipped"
	exit 77
fi
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
mkdir "$work/new"
# -rss_limit_mb: a damaged capture must not make the reader balloon;
# -timeout: nor spin
"$fuzzer" -max_total_time="$secs" -timeout=20 -rss_limit_mb=1024 \
	-max_len="$maxlen" -print_final_stats=1 -artifact_prefix="$work/" \
	"$work/new" "$corpus" >"$work/log" 2>&1
rc=$?
grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|INFO: seed corpus)" "$work/log"
if [ $rc -ne 0 ]; then
	tail -60 "$work/log"
	for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
		[ -e "$a" ] || continue
		echo "reproducer: $(basename "$a") (base64 below)"
		base64 "$a" | head -200
	done
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi
echo "ok   fuzz/$name: ${secs} s without a crash"
echo "1 passed, 0 failed, 0 skipped"
