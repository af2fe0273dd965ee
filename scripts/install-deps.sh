#!/usr/bin/env bash
# Install everything memattach needs to build and test, from Debian 12's
# packages only.  Safe to run again: it installs only what is missing.
set -euo pipefail

PACKAGES=(
	# build
	gcc make cmake pkg-config
	libelf-dev libdw-dev # ELF and DWARF (elfutils)
	libjansson-dev # JSON output
	libzstd-dev # capture compression
	# reports: pprof output (profile.proto compiled by protoc-c, gzip)
	libprotobuf-c-dev protobuf-c-compiler zlib1g-dev
	golang-github-google-pprof-dev # profile.proto itself
	# tests
	libcriterion-dev # unit tests
	python3 # end-to-end test drivers and targets
	python3.11-dbg # DWARF of Debian's /usr/bin/python3.11
	python3-numpy # heap census test: an array that owns its data
	libpython3.11 # errors test: a program that loads libpython, no interpreter
	strace # "another tracer is attached" test
	libjemalloc2 # payload test: malloc replaced by LD_PRELOAD
	util-linux # setpriv: the "permission denied" test
	clang-format
	# report tests: pprof decoded by protoc and read by go tool pprof, the
	# HTML report opened in headless Chromium, the capture fuzzer
	protobuf-compiler golang-go chromium
	python3-jsonschema # the speedscope file checked against its schema
	tmux # attach --live's test: a terminal to drive and read
	clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	echo "install-deps: installing ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
	echo "install-deps: all packages present"
fi
