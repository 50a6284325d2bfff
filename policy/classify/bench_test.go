package classify

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/classbench"
)

// benchLookups runs fn over pk, one lookup per op, and reports beside ns/op
// the median and 99th percentile of the mean lookup time of each run of
// 32 consecutive lookups (one clock read per lookup would cost more than a
// lookup), as espy policy bench does.
func benchLookups(b *testing.B, pk []policy.Packet, fn func(*policy.Packet)) {
	const batch = 32
	b.ReportAllocs()
	per := make([]float64, 0, 1<<16)
	t0 := time.Now()
	for i := 0; b.Loop(); i++ {
		fn(&pk[i%len(pk)])
		if i%batch == batch-1 {
			t := time.Now()
			if len(per) < cap(per) {
				per = append(per, float64(t.Sub(t0).Nanoseconds())/batch)
			}
			t0 = t
		}
	}
	if len(per) == 0 {
		return
	}
	slices.Sort(per)
	b.ReportMetric(per[len(per)/2], "p50-ns/lookup")
	b.ReportMetric(per[len(per)*99/100], "p99-ns/lookup")
}

// benchSet measures one rule set: the packed linear reference, the Set's
// classifier over ordered rules (the headline figure), the first-hit
// classifier over decorrelated entries where decorrelation stays under 200k
// entries, and the Set behind the flow cache (a ClassBench trace repeats
// few headers, so the cache mostly costs).
func benchSet(b *testing.B, rules []policy.Rule, hs []classbench.Header) {
	pk := make([]policy.Packet, len(hs))
	for i := range hs {
		pk[i] = hs[i].Packet
	}
	lin := policy.NewLinear(rules)
	b.Run("linear", func(b *testing.B) { benchLookups(b, pk, func(p *policy.Packet) { lin.Lookup(p) }) })
	ord, err := Build(rules, false, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("ordered", func(b *testing.B) { benchLookups(b, pk, func(p *policy.Packet) { ord.Lookup(p) }) })
	if d, err := policy.Decorrelate(rules, 200000); err == nil {
		dc, vs, err := BuildDisjoint(d)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("disjoint", func(b *testing.B) {
			benchLookups(b, pk, func(p *policy.Packet) {
				if v, ok := dc.Lookup(p); ok {
					_ = vs[v]
				}
			})
		})
	}
	c := NewCache(ord, 1<<16)
	b.Run("cached", func(b *testing.B) { benchLookups(b, pk, func(p *policy.Packet) { c.Lookup(p) }) })
}

// BenchmarkClassBench measures lookups over the shared ClassBench sets and
// traces; it skips when ../shared/classbench is absent.
func BenchmarkClassBench(b *testing.B) {
	for _, name := range []string{"acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"} {
		b.Run(name, func(b *testing.B) {
			rules, hs := loadShared(b, name)
			benchSet(b, rules, hs)
		})
	}
}

// BenchmarkTestdataClassBench measures lookups over the ClassBench subsets
// shipped in policy/classbench/testdata, so it always runs.
func BenchmarkTestdataClassBench(b *testing.B) {
	for _, name := range []string{"acl1_300", "fw1_300"} {
		b.Run(name, func(b *testing.B) {
			fs, err := classbench.LoadFilters(filepath.Join("../classbench/testdata", name))
			if err != nil {
				b.Fatal(err)
			}
			hs, err := classbench.LoadTrace(filepath.Join("../classbench/testdata", name+".trace"))
			if err != nil {
				b.Fatal(err)
			}
			benchSet(b, classbench.Rules(fs), hs)
		})
	}
}

// BenchmarkBuild measures Build (the classifier over ordered rules, with
// its choice of collision limit; no decorrelation) on the shared sets.
func BenchmarkBuild(b *testing.B) {
	for _, name := range []string{"acl1_10K", "fw1_10K", "ipc1_10K"} {
		b.Run(name, func(b *testing.B) {
			rules, _ := loadShared(b, name)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(rules, false, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
