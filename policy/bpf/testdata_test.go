package bpf

import (
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/classbench"
)

// TestTestdataClassBench compiles the shipped ClassBench subsets, ordered and
// decorrelated, and checks the reference lookup against the traces.
func TestTestdataClassBench(t *testing.T) {
	for _, name := range []string{"acl1_300", "fw1_300"} {
		fs, err := classbench.LoadFilters(filepath.Join("../classbench/testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		hs, err := classbench.LoadTrace(filepath.Join("../classbench/testdata", name+".trace"))
		if err != nil {
			t.Fatal(err)
		}
		rules := classbench.Rules(fs)
		d, err := policy.Decorrelate(rules, 200000)
		if err != nil {
			t.Fatal(err)
		}
		ord, err := CompileRules(rules, Options{})
		if err != nil {
			t.Fatal(err)
		}
		dis, err := CompileDecorrelated(d, Options{})
		if err != nil {
			t.Fatalf("%s: decorrelated (%d entries): %v", name, d.Len(), err)
		}
		t.Logf("%s: ordered %d tables %d keys; decorrelated %d ranges, %d tables %d keys", name, len(ord.Tables), len(ord.Keys), len(dis.Ranges), len(dis.Tables), len(dis.Keys))
		for i, h := range hs {
			for _, c := range []*Compiled{ord, dis} {
				if v := c.Verdict(c.Lookup(&h.Packet)); v.Rule+1 != h.Match {
					t.Fatalf("%s header %d: rule %d, want %d (disjoint=%v)", name, i+1, v.Rule+1, h.Match, c.Meta.Flags&FlagDisjoint != 0)
				}
			}
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	fs, err := classbench.LoadFilters("../classbench/testdata/acl1_300")
	if err != nil {
		b.Fatal(err)
	}
	hs, err := classbench.LoadTrace("../classbench/testdata/acl1_300.trace")
	if err != nil {
		b.Fatal(err)
	}
	c, err := CompileRules(classbench.Rules(fs), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Lookup(&hs[i%len(hs)].Packet)
	}
}
