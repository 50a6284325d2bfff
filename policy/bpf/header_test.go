package bpf

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHeaderLayout compiles policy.h with the system C compiler and checks
// that sizes and field offsets match the bytes MarshalBinary writes.
func TestHeaderLayout(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) on PATH: cannot check policy.h against the Go layout")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "layout.c")
	prog := `#include "policy.h"
#include <stdio.h>
#include <stddef.h>
#define P(s, f) printf(#s "." #f "=%zu\n", offsetof(struct s, f))
#define S(s) printf(#s "=%zu\n", sizeof(struct s))
int main(void) {
	S(espy_policy_key); S(espy_policy_bucket); S(espy_policy_range); S(espy_policy_table); S(espy_policy_meta);
	P(espy_policy_key, label); P(espy_policy_key, meta); P(espy_policy_key, src); P(espy_policy_key, dst);
	P(espy_policy_range, label_lo); P(espy_policy_range, sport_lo); P(espy_policy_range, dport_lo);
	P(espy_policy_range, family_lo); P(espy_policy_range, proto_lo); P(espy_policy_range, action); P(espy_policy_range, final);
	P(espy_policy_range, prio); P(espy_policy_range, rule); P(espy_policy_range, sa);
	P(espy_policy_table, min_prio); P(espy_policy_table, keys);
	P(espy_policy_meta, keys); P(espy_policy_meta, ranges); P(espy_policy_meta, miss_action);
	printf("ESPY_POLICY_MAX_TABLES=%d\nESPY_POLICY_BUCKET=%d\nESPY_POLICY_MAX_KEYS=%d\nESPY_POLICY_MAX_RANGES=%d\nESPY_POLICY_PUNT=%d\n",
		ESPY_POLICY_MAX_TABLES, ESPY_POLICY_BUCKET, ESPY_POLICY_MAX_KEYS, ESPY_POLICY_MAX_RANGES, ESPY_POLICY_PUNT);
	return 0;
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	bin := filepath.Join(dir, "layout")
	if out, err := exec.Command(cc, "-I", wd, "-o", bin, src).CombinedOutput(); err != nil {
		if strings.Contains(string(out), "linux/types.h") {
			t.Skipf("kernel headers missing (linux-libc-dev): %s", out)
		}
		t.Fatalf("cc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"espy_policy_key": KeySize, "espy_policy_bucket": BucketSize, "espy_policy_range": RangeSize,
		"espy_policy_table": TableSize, "espy_policy_meta": MetaSize,
		"espy_policy_key.label": 4, "espy_policy_key.meta": 8, "espy_policy_key.src": 16, "espy_policy_key.dst": 32,
		"espy_policy_range.label_lo": 64, "espy_policy_range.sport_lo": 72, "espy_policy_range.dport_lo": 76,
		"espy_policy_range.family_lo": 80, "espy_policy_range.proto_lo": 82, "espy_policy_range.action": 84, "espy_policy_range.final": 85,
		"espy_policy_range.prio": 88, "espy_policy_range.rule": 92, "espy_policy_range.sa": 96,
		"espy_policy_table.min_prio": KeySize, "espy_policy_table.keys": KeySize + 4,
		"espy_policy_meta.keys": 8, "espy_policy_meta.ranges": 12, "espy_policy_meta.miss_action": 16,
		"ESPY_POLICY_MAX_TABLES": MaxTables, "ESPY_POLICY_BUCKET": Bucket, "ESPY_POLICY_MAX_KEYS": MaxKeys,
		"ESPY_POLICY_MAX_RANGES": MaxRanges, "ESPY_POLICY_PUNT": ActionPunt,
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	for k, v := range want {
		if got[k] != itoa(v) {
			t.Errorf("%s: C says %s, Go says %d", k, got[k], v)
		}
	}
	// The marshalled forms have the C sizes and put fields where C does.
	r, _ := Range{Prio: 0x01020304, Action: 9, Final: true, SPortLo: 0xabcd}.MarshalBinary()
	if len(r) != RangeSize || r[88] != 4 || r[84] != 9 || r[85] != 1 || r[72] != 0xcd {
		t.Errorf("Range.MarshalBinary layout: % x", r)
	}
	k, _ := Key{Table: 1, Meta: 0x0400000000000000}.MarshalBinary()
	if len(k) != KeySize || k[0] != 1 || k[15] != 4 {
		t.Errorf("Key.MarshalBinary layout: % x", k)
	}
}

func itoa(v int) string { return strconv.Itoa(v) }
