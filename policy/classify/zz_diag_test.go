package classify

import (
	"testing"

	"github.com/espy-dpi/espy/policy"
)

func BenchmarkZZHot(b *testing.B) {
	for _, name := range []string{"acl1_10K", "ipc1_10K"} {
		rules, hs := loadShared(b, name)
		s, _ := Build(rules, false, 0)
		for _, np := range []int{256, 4096, len(hs)} {
			pk := make([]policy.Packet, np)
			for i := range pk {
				pk[i] = hs[i*(len(hs)/np)].Packet
			}
			b.Run(name+"/"+itoa(np), func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					s.Lookup(&pk[i%len(pk)])
				}
			})
		}
	}
}

func itoa(n int) string {
	return string(rune('0'+n/10000%10)) + string(rune('0'+n/1000%10)) + string(rune('0'+n/100%10)) + string(rune('0'+n/10%10)) + string(rune('0'+n%10))
}
