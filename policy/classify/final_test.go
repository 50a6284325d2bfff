package classify

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/policytest"
)

// boxOf returns the box of an item, rebuilt from its low bounds and widths.
func boxOf(x *item) policy.Box {
	var b policy.Box
	set := func(d int, lo, w uint64) { b[d] = policy.Span(lo, lo+w) }
	set(policy.DimFamily, uint64(x.fam), uint64(x.famW))
	set(policy.DimProto, uint64(x.proto), uint64(x.protoW))
	set(policy.DimSPort, uint64(x.sport), uint64(x.sportW))
	set(policy.DimDPort, uint64(x.dport), uint64(x.dportW))
	set(policy.DimLabel, uint64(x.label), uint64(x.labelW))
	b[policy.DimSrc] = policy.Interval{Lo: x.src, Hi: add128(x.src, x.srcW)}
	b[policy.DimDst] = policy.Interval{Lo: x.dst, Hi: add128(x.dst, x.dstW)}
	return b
}

// checkFinal compares every live item's final flag with its definition,
// by brute force over policy.Box.Overlaps: a set flag must be right, and
// with exact set a clear flag too.
func checkFinal(t *testing.T, c *Classifier, exact bool, stage string) {
	t.Helper()
	for ti, tb := range c.tables {
		tb.eachLivePos(func(pos int) {
			x := &tb.items[pos]
			if tb.packed && tb.small[pos].final != x.final {
				t.Fatalf("%s: table %d item %d: compact flag %v, wide %v", stage, ti, pos, tb.small[pos].final, x.final)
			}
			bx := boxOf(x)
			want := true
			for tj, o := range c.tables {
				if tj == ti {
					continue
				}
				o.eachLive(func(y *item) {
					by := boxOf(y)
					if y.prio < x.prio && by.Overlaps(&bx) {
						want = false
					}
				})
			}
			if x.final && !want {
				t.Fatalf("%s: table %d item %d (prio %d) is marked final but a better item of another table overlaps it", stage, ti, pos, x.prio)
			}
			if exact && x.final != want {
				t.Fatalf("%s: table %d item %d (prio %d): final %v, want %v", stage, ti, pos, x.prio, x.final, want)
			}
		})
	}
}

// TestFinalFlags checks the final flags after a build (exact), after each
// incremental insert (exact) and after removals (conservative), on mixed
// and on IPv4-only random policies.
func TestFinalFlags(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		for _, v4 := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(seed, 11))
			var rules []policy.Rule
			if v4 {
				rules = policytest.V4Rules(rng, 80)
			} else {
				rules = policytest.Rules(rng, 80, true)
			}
			var start, later []policy.Rule
			for i, r := range rules {
				if i%3 == 2 {
					later = append(later, r)
				} else {
					start = append(start, r)
				}
			}
			name := fmt.Sprintf("seed %d v4=%v", seed, v4)
			s, err := Build(start, false, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkFinal(t, s.c, true, name+" build")
			for _, r := range later {
				if _, err := s.Insert(r); err != nil {
					t.Fatal(err)
				}
				checkFinal(t, s.c, true, name+" insert "+r.Name)
			}
			for _, i := range rng.Perm(len(rules))[:20] {
				if _, err := s.Remove(rules[i].Name); err != nil {
					t.Fatal(err)
				}
			}
			checkFinal(t, s.c, false, name+" remove")
		}
	}
}

// TestV4Loop checks, on IPv4-only unlabelled random policies, that Lookup
// takes the IPv4 loop and agrees with the general loop and the linear
// scan, through inserts and removals, and that a rule the loop cannot
// serve (a labelled one) turns it off without changing any answer.
func TestV4Loop(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 5))
		all := policytest.V4Rules(rng, 60)
		var cur, later []policy.Rule
		for i, r := range all {
			if i%2 == 0 {
				cur = append(cur, r)
			} else {
				later = append(later, r)
			}
		}
		s, err := Build(cur, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		check := func(stage string, wantV4 bool) {
			t.Helper()
			if s.c.v4 != wantV4 {
				t.Fatalf("seed %d %s: IPv4 loop on = %v, want %v", seed, stage, s.c.v4, wantV4)
			}
			for _, p := range policytest.Packets(rng, cur, 600) {
				want := policy.LinearLookup(cur, &p)
				if got := s.Lookup(&p); !same(got, want) {
					t.Fatalf("seed %d %s: %v: classifier %+v, linear %+v", seed, stage, p, got, want)
				}
				v, ok := s.c.Lookup(&p)
				w, wok := s.c.lookupAny(&p)
				if v != w || ok != wok {
					t.Fatalf("seed %d %s: %v: IPv4 loop %d,%v, general loop %d,%v", seed, stage, p, v, ok, w, wok)
				}
			}
		}
		check("build", true)
		for _, r := range later {
			if _, err := s.Insert(r); err != nil {
				t.Fatal(err)
			}
			cur = insertSorted(cur, r)
		}
		check("inserts", true)
		for _, i := range rng.Perm(len(cur))[:15] {
			victim := cur[i].Name
			if _, err := s.Remove(victim); err != nil {
				t.Fatal(err)
			}
		}
		cur = cur[:0]
		for _, r := range all {
			if _, ok := s.rules[r.Name]; ok {
				cur = insertSorted(cur, r)
			}
		}
		check("removals", true)
		lab := cur[0]
		lab.Name, lab.Precedence = "labelled", 1
		lab.Box[policy.DimLabel] = policy.Span(1, 1)
		if _, err := s.Insert(lab); err != nil {
			t.Fatal(err)
		}
		cur = insertSorted(cur, lab)
		check("labelled rule", false)
	}
}

// TestV4LoopAllocs checks that the IPv4 loop does not allocate.
func TestV4LoopAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	rules := policytest.V4Rules(rng, 200)
	s, err := Build(rules, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !s.c.v4 {
		t.Fatal("IPv4 loop off for an IPv4-only unlabelled policy")
	}
	pk := policytest.Packets(rng, rules, 256)
	i := 0
	if n := testing.AllocsPerRun(1000, func() { s.Lookup(&pk[i%len(pk)]); i++ }); n != 0 {
		t.Errorf("Set.Lookup: %v allocations per lookup", n)
	}
}
