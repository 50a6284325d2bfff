package classify

import (
	"testing"

	"github.com/espy-dpi/espy/policy"
)

// BenchmarkClassBench measures one lookup per op over the ClassBench traces:
// the linear reference, the classifier over ordered rules, over decorrelated
// entries (where decorrelation stays under 200k entries) and behind the flow
// cache.
func BenchmarkClassBench(b *testing.B) {
	for _, name := range []string{"acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"} {
		b.Run(name, func(b *testing.B) {
			rules, hs := loadShared(b, name)
			pk := make([]policy.Packet, len(hs))
			for i := range hs {
				pk[i] = hs[i].Packet
			}
			b.Run("linear", func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					policy.LinearLookup(rules, &pk[i%len(pk)])
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
			dec, err := Build(rules, true, 200000)
			if err != nil {
				b.Fatal(err)
			}
			if dec.Fallback == "" {
				b.Run("decorrelated", func(b *testing.B) {
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						dec.Lookup(&pk[i%len(pk)])
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
