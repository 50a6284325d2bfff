#!/bin/sh
# bench-samplepath.sh [BASE]: the sample path of the inline appliance before
# (git revision BASE, default 0e70e03, the last commit before the batched
# ring-buffer sample path) and after (the working tree), measured back to
# back in one run so that the ratios hold on a shared machine:
#
#   - the kernel's cost of a sampled packet (BenchmarkXDPUnknownSampled,
#     BPF_PROG_TEST_RUN, ns/packet);
#   - userspace's CPU time to decide a new flow's sample without the system
#     calls (BenchmarkHandleNewFlow, 200,000 new flows: the process's user
#     and system time less that of a one-flow run, per flow; CPU time, not
#     ns/op, because other loads of a shared machine inflate wall time);
#   - new flows offered at fixed rates through a veth into the daemon in
#     network namespaces (TestSampleRateSustained): samples lost, decisions
#     per second, and (after only) the sample loop's CPU time per sample.
#
# Needs root, BPF and iproute2 (the tests skip otherwise). Takes 3-5 minutes;
# ESPY_LONG=1 adds 100,000, 150,000 and 200,000 new flows/s.
set -eu
base=${1:-0e70e03}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
git -C "$root" archive "$base" | tar -x -C "$tmp"
mkdir "$tmp/bin"
(cd "$tmp" && go test -c -o "$tmp/bin/before-ebpf.test" ./ebpf && go test -c -o "$tmp/bin/before-inline.test" ./inline)
(cd "$root" && go test -c -o "$tmp/bin/after-ebpf.test" ./ebpf && go test -c -o "$tmp/bin/after-inline.test" ./inline)
echo "# sample path, before ($base) and after ($(git -C "$root" describe --always --dirty)), $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
for v in before after; do
	echo "## $v: kernel cost of a sampled packet"
	(cd "$root/ebpf" && "$tmp/bin/$v-ebpf.test" -test.run '^$' -test.bench 'XDPUnknownSampled|XDPUnknownOverLimit' -test.benchtime 1s -test.count 3 | grep Benchmark)
done
n=200000
for round in 1 2 3; do
	for v in before after; do
		if ! "$tmp/bin/$v-inline.test" -test.list 'BenchmarkHandleNewFlow' | grep -q .; then
			echo "## $v: no BenchmarkHandleNewFlow"
			continue
		fi
		cpu() {
			/usr/bin/time -f '%U %S' -o "$tmp/time" "$tmp/bin/$v-inline.test" -test.run '^$' -test.bench HandleNewFlow -test.benchtime "$1x" >/dev/null
			awk '{ print $1 + $2 }' "$tmp/time"
		}
		one=$(cpu 1)
		all=$(cpu $n)
		echo "## $v (round $round): BenchmarkHandleNewFlow: $(awk -v a="$all" -v o="$one" -v n=$n 'BEGIN { printf "%.2f", (a - o) / (n - 1) * 1e6 }') µs CPU per new flow ($n flows: $all s, 1 flow: $one s)"
	done
done
for v in before after; do
	echo "## $v: new flows at fixed rates"
	(cd "$root/inline" && "$tmp/bin/$v-inline.test" -test.run 'TestSampleRateSustained' -test.count 1 -test.v | grep -E 'offered|PASS|FAIL|SKIP' | sed 's/^ *//')
done
