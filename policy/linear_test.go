package policy_test

import (
	"math/rand/v2"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/policytest"
)

func TestLinearMatchesBoxScan(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 3))
		rules := policytest.Rules(rng, 30, true)
		l := policy.NewLinear(rules)
		for _, p := range policytest.Packets(rng, rules, 1000) {
			if a, b := l.Lookup(&p), policy.LinearLookup(rules, &p); a != b {
				t.Fatalf("seed %d %v: packed %+v, box scan %+v", seed, p, a, b)
			}
		}
	}
}

func TestLinearAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	rules := policytest.Rules(rng, 50, true)
	l := policy.NewLinear(rules)
	pk := policytest.Packets(rng, rules, 16)
	i := 0
	if n := testing.AllocsPerRun(200, func() { l.Lookup(&pk[i%len(pk)]); i++ }); n != 0 {
		t.Errorf("Lookup allocates %.1f times", n)
	}
}
