package classify

import (
	"testing"

	"github.com/espy-dpi/espy/policy"
)

// BenchmarkClassBench measures one lookup per op over the ClassBench traces:
// the packed linear reference, the Set's classifier over ordered rules, the
// first-hit classifier over decorrelated entries (where decorrelation stays
// under 200k entries) and the Set behind the flow cache.
func BenchmarkClassBench(b *testing.B) {
	for _, name := range []string{"acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"} {
		b.Run(name, func(b *testing.B) {
			rules, hs := loadShared(b, name)
			pk := make([]policy.Packet, len(hs))
			for i := range hs {
				pk[i] = hs[i].Packet
			}
			lin := policy.NewLinear(rules)
			b.Run("linear", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					lin.Lookup(&pk[i%len(pk)])
				}
			})
			ord, err := Build(rules, false, 0)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("ordered", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					ord.Lookup(&pk[i%len(pk)])
				}
			})
			if d, err := policy.Decorrelate(rules, 200000); err == nil {
				dc, vs, err := BuildDisjoint(d)
				if err != nil {
					b.Fatal(err)
				}
				b.Run("disjoint", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						if v, ok := dc.Lookup(&pk[i%len(pk)]); ok {
							_ = vs[v]
						}
					}
				})
			}
			c := NewCache(ord, 1<<16)
			b.Run("cached", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					c.Lookup(&pk[i%len(pk)])
				}
			})
		})
	}
}
