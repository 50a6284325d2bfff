#!/usr/bin/env bash
# Runs every Go fuzz target of the repository for DURATION each, one at a
# time, and stops at the first failure (the failing input is left under the
# package's testdata/fuzz/ by go test).
#
# usage: scripts/fuzz-all.sh DURATION     e.g. scripts/fuzz-all.sh 20s
set -euo pipefail

cd "$(dirname "$0")/.."

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 DURATION   (a go test -fuzztime value: 20s, 2m, 1000x)" >&2
	exit 2
fi
duration=$1

# "dir name" pairs: every func FuzzXxx(f *testing.F) in a tracked or new
# (not ignored) *_test.go file, outside vendor/ and testdata/.
list_tests() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files --cached --others --exclude-standard -- '*_test.go'
	else
		find . -name '*_test.go' -not -path './.git/*' | sed 's|^\./||'
	fi
}
targets=$(
	list_tests |
		grep -Ev '(^|/)(vendor|testdata)/' |
		while read -r f; do
			sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' "$f" |
				while read -r name; do echo "$(dirname "$f") $name"; done
		done | sort -u
)

if [ -z "$targets" ]; then
	echo "fuzz-all: no fuzz targets found"
	exit 0
fi

n=$(echo "$targets" | wc -l)
i=0
while read -r dir name; do
	i=$((i + 1))
	echo "fuzz-all: [$i/$n] $name in ./$dir for $duration"
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$duration" "./$dir"; then
		echo "fuzz-all: $name in ./$dir FAILED; reproduce with: go test -run '^${name}\$' ./$dir" >&2
		exit 1
	fi
done <<<"$targets"
echo "fuzz-all: all $n fuzz targets passed ($duration each)"
