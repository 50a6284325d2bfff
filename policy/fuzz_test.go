package policy

import (
	"math/rand/v2"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser. Any accepted policy must be
// well formed, and its decorrelated form must answer as the rules do.
func FuzzParse(f *testing.F) {
	f.Add([]byte("policy:\n  rules:\n    - name: a\n      src: 192.0.2.0/24\n      action: drop\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, r := range p.Rules {
			for d := range r.Box {
				if r.Box[d].Hi.Less(r.Box[d].Lo) {
					t.Fatalf("rule %q: empty dimension %d", r.Name, d)
				}
			}
		}
		if len(p.Rules) > 64 {
			return
		}
		d, err := Decorrelate(p.Rules, 4096)
		if err != nil {
			return
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 50 && len(p.Rules) > 0; i++ {
			pk, ok := PointIn(&p.Rules[rng.IntN(len(p.Rules))].Box, rng, i%3 == 0)
			if !ok {
				continue
			}
			if a, b := p.Lookup(&pk), d.Lookup(&pk); a.Name != b.Name {
				t.Fatalf("%v: rules say %q, decorrelated %q", pk, a.Name, b.Name)
			}
		}
	})
}
