#!/bin/sh
# bench-xdppad.sh [BASE] [ROUNDS]: the cost of the XDP pad and next-header
# check on decided null flows, before (git revision BASE, default e4fc095,
# the last commit that checked only the last 16 pad bytes and took WESP's
# lengths unchecked; fe289a2 is the last without any pad check) and after
# (the working tree), in one run,
# interleaved round by round so that both see the same load on a shared
# machine. The before build gets the tree's shapes_bench_test.go and
# pad_test.go (for the frame helper; its tests are not run), so the shapes
# are measured on both. Prints each benchmark's min / median / max
# ns/packet (BPF_PROG_TEST_RUN, kernel-measured) over the rounds; the
# minimum is the figure least disturbed by other work.
#
# Needs root and BPF (the benchmarks skip otherwise). ROUNDS defaults to 8,
# about 20 s each.
set -eu
base=${1:-e4fc095}
rounds=${2:-8}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
git -C "$root" archive "$base" | tar -x -C "$tmp"
cp "$root/ebpf/shapes_bench_test.go" "$root/ebpf/pad_test.go" "$tmp/ebpf/"
(cd "$tmp" && go test -c -o "$tmp/before.test" ./ebpf)
(cd "$root" && go test -c -o "$tmp/after.test" ./ebpf)
echo "# XDP pad check, before ($base) and after ($(git -C "$root" describe --always --dirty)), $(date -u '+%Y-%m-%d %H:%M UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ "$r" -le "$rounds" ]; do
	for v in before after; do
		(cd "$root/ebpf" && "$tmp/$v.test" -test.run '^$' \
			-test.bench 'XDPNullPolicy|XDPEncrypted|XDPNullShape' -test.benchtime 1000000x) |
			awk -v v="$v" '/^Benchmark/ { for (i = 1; i <= NF; i++) if ($i == "ns/packet") print $1, v, $(i - 1) }'
	done >>"$tmp/out"
	r=$((r + 1))
done
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
sort -k1,1 -k2,2 -k3,3n "$tmp/out" | awk '
	{ k = $1 " " $2; a[k] = a[k] " " $3 }
	END {
		for (k in a) {
			n = split(substr(a[k], 2), x, " ")
			split(k, kk, " ")
			printf "%-40s %-6s min %6.1f  median %6.1f  max %6.1f  (%d rounds)\n", kk[1], kk[2], x[1], x[int((n + 1) / 2)], x[n], n
		}
	}' | sort
