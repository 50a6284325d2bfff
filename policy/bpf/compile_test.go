package bpf

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/policytest"
)

func same(a, b policy.Verdict) bool { return a.Action == b.Action && a.SA == b.SA && a.Name == b.Name }

// TestPropertyCompiled checks that the reference BPF lookup over the compiled
// maps answers as the linear scan does, for ordered and decorrelated input,
// with the table budget forcing merges (and so prefix extension) or not.
func TestPropertyCompiled(t *testing.T) {
	compiled := 0
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 17))
		rules := policytest.Rules(rng, 5+rng.IntN(30), true)
		d, err := policy.Decorrelate(rules, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		for _, maxTables := range []int{MaxTables, 6} {
			opt := Options{MaxTables: maxTables}
			ord, err := CompileRules(rules, opt)
			if errors.Is(err, ErrTooLargeForBPF) {
				continue
			}
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			compiled++
			dis, err := CompileDecorrelated(d, opt)
			if err != nil && !errors.Is(err, ErrTooLargeForBPF) {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if dis != nil {
				compiled++
			}
			if len(ord.Tables) > maxTables || (dis != nil && len(dis.Tables) > maxTables) {
				t.Fatalf("seed %d: table budget %d exceeded", seed, maxTables)
			}
			for _, p := range policytest.Packets(rng, rules, 1500) {
				want := policy.LinearLookup(rules, &p)
				if got := ord.Verdict(ord.Lookup(&p)); !same(got, want) {
					t.Fatalf("seed %d tables %d: %v: compiled ordered %+v, linear %+v", seed, maxTables, p, got, want)
				}
				if dis == nil {
					continue
				}
				if got := dis.Verdict(dis.Lookup(&p)); !same(got, want) {
					t.Fatalf("seed %d tables %d: %v: compiled decorrelated %+v, linear %+v", seed, maxTables, p, got, want)
				}
			}
		}
	}
	// Over budget is a legitimate answer, but the test must exercise the
	// compiled lookup on most sets to mean anything.
	if compiled < 60 {
		t.Errorf("only %d of 120 compilations fit the budget", compiled)
	}
}

func TestTooLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	rules := policytest.Rules(rng, 50, true)
	if _, err := CompileRules(rules, Options{MaxRanges: 10}); !errors.Is(err, ErrTooLargeForBPF) {
		t.Errorf("10-range budget: err %v, want ErrTooLargeForBPF", err)
	}
	if _, err := CompileRules(rules, Options{MaxTables: 1}); !errors.Is(err, ErrTooLargeForBPF) {
		t.Errorf("1 table: err %v, want ErrTooLargeForBPF", err)
	}
	if _, err := CompileRules(rules, Options{MaxTables: MaxTables + 1}); err == nil {
		t.Error("more tables than the header allows: no error")
	}
}

func TestLookupAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	rules := policytest.Rules(rng, 100, true)
	c, err := CompileRules(rules, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pk := policytest.Packets(rng, rules, 64)
	i := 0
	if n := testing.AllocsPerRun(500, func() { c.Lookup(&pk[i%len(pk)]); i++ }); n != 0 {
		t.Errorf("Lookup allocates %.1f times per call", n)
	}
}
