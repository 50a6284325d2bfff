#!/usr/bin/env bash
# Scores espy's verdicts and tshark's per-packet NULL heuristic on the shared
# labelled corpora (../shared/corpus/synth and ../shared/corpus/public) with
# ../shared/tools/score_verdicts.py, and prints both score lines.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared
[ -d "$shared/corpus" ] || { echo "bench-accuracy: $shared/corpus not found" >&2; exit 1; }
[ -x bin/espy ] || { echo "bench-accuracy: build bin/espy first (make build)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

score() { python3 "$shared/tools/score_verdicts.py" "$1" "$2" | tail -1; }

synth=("$shared"/corpus/synth/*.pcap)
public=()
for f in "$shared"/corpus/public/*/*; do
	case "$f" in *.cap | *.pcap | *.pcapng) public+=("$f") ;; esac
done

echo "date: $(date -u +%Y-%m-%dT%H:%MZ); $(uname -r); $(nproc) cores; $(bin/espy version); $(tshark --version | head -1)"
for set in synth public; do
	declare -n files=$set
	labels="$shared/corpus/$set/labels.jsonl"
	bin/espy replay --format jsonl "${files[@]}" > "$tmp/espy-$set.jsonl"
	scripts/tshark-verdicts.py "${files[@]}" > "$tmp/tshark-$set.jsonl"
	echo "$set espy:   $(score "$labels" "$tmp/espy-$set.jsonl")"
	echo "$set tshark: $(score "$labels" "$tmp/tshark-$set.jsonl")"
	python3 "$shared/tools/score_verdicts.py" "$labels" "$tmp/tshark-$set.jsonl" | grep -E "^  (null|encrypted) " | sed "s/^/$set tshark confusion: /"
done
