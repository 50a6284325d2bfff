package bpf

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/classbench"
	"github.com/espy-dpi/espy/policy/policytest"
)

// tableOfRanges returns the table of every range, read back from the keys.
func tableOfRanges(c *Compiled) []int {
	tb := make([]int, len(c.Ranges))
	for i := range tb {
		tb[i] = -1
	}
	for k, b := range c.Keys {
		for _, i := range b.Idx[:b.Count] {
			tb[i] = int(k.Table)
		}
	}
	return tb
}

// checkFinal compares every flag of an ordered compilation of rules with
// all pairs: a final range has no overlapping range of another table with a
// better priority, and a range without the flag has one (the compiler is
// exact, not merely safe).
func checkFinal(t *testing.T, what string, rules []policy.Rule, c *Compiled) (finals int) {
	t.Helper()
	tb := tableOfRanges(c)
	for i := range c.Ranges {
		if tb[i] < 0 {
			t.Fatalf("%s: range %d is in no bucket", what, i)
		}
		beaten := -1
		for j := range c.Ranges {
			if tb[j] != tb[i] && c.Ranges[j].Prio < c.Ranges[i].Prio && rules[j].Box.Overlaps(&rules[i].Box) {
				beaten = j
				break
			}
		}
		switch {
		case c.Ranges[i].Final && beaten >= 0:
			t.Fatalf("%s: range %d (table %d) is final, but range %d (table %d, prio %d < %d) overlaps it",
				what, i, tb[i], beaten, tb[beaten], c.Ranges[beaten].Prio, c.Ranges[i].Prio)
		case !c.Ranges[i].Final && beaten < 0:
			t.Errorf("%s: range %d is not final, but no better range of another table overlaps it", what, i)
		}
		if c.Ranges[i].Final {
			finals++
		}
	}
	return finals
}

// TestFinalBruteForce checks the final flags of random ordered policies,
// and of the shipped ClassBench subsets, against all pairs.
func TestFinalBruteForce(t *testing.T) {
	finals, total := 0, 0
	for seed := uint64(1); seed <= 60; seed++ {
		rng := rand.New(rand.NewPCG(seed, 23))
		rules := policytest.Rules(rng, 5+rng.IntN(60), rng.IntN(2) == 0)
		for _, maxTables := range []int{MaxTables, 4} {
			c, err := CompileRules(rules, Options{MaxTables: maxTables})
			if errors.Is(err, ErrTooLargeForBPF) {
				continue
			}
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			finals += checkFinal(t, "random", rules, c)
			total += len(c.Ranges)
		}
	}
	for _, name := range []string{"acl1_300", "fw1_300"} {
		fs, err := classbench.LoadFilters(filepath.Join("../classbench/testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		rules := classbench.Rules(fs)
		c, err := CompileRules(rules, Options{})
		if err != nil {
			t.Fatal(err)
		}
		n := checkFinal(t, name, rules, c)
		t.Logf("%s: %d of %d ranges final", name, n, len(c.Ranges))
	}
	// Both answers must occur for the check to mean anything.
	if finals == 0 || finals == total {
		t.Errorf("%d of %d random ranges final: the check exercised only one answer", finals, total)
	}
}

// TestFinalMutation proves that the lookup property tests catch a wrong
// final flag: with every flag forced on, the compiled lookup of some random
// ordered policy stops early and disagrees with the linear scan.
func TestFinalMutation(t *testing.T) {
	wrong := 0
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 17))
		rules := policytest.Rules(rng, 5+rng.IntN(30), true)
		c, err := CompileRules(rules, Options{})
		if errors.Is(err, ErrTooLargeForBPF) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range c.Ranges {
			c.Ranges[i].Final = true
		}
		for _, p := range policytest.Packets(rng, rules, 1500) {
			if !same(c.Verdict(c.Lookup(&p)), policy.LinearLookup(rules, &p)) {
				wrong++
			}
		}
	}
	if wrong == 0 {
		t.Error("all final flags forced on, yet no lookup disagreed with the linear scan: the property tests cannot see a wrong flag")
	}
	t.Logf("all flags on: %d wrong answers", wrong)
}

// BenchmarkCompileClassBench measures CompileRules, final flags included,
// on the shared 10k ClassBench sets.
func BenchmarkCompileClassBench(b *testing.B) {
	for _, name := range []string{"acl1_10K", "fw1_10K", "ipc1_10K"} {
		b.Run(name, func(b *testing.B) {
			rp := filepath.Join(sharedDir, "hypersplit/rules", name)
			if _, err := os.Stat(rp); err != nil {
				b.Skipf("shared ClassBench data not available (%v)", err)
			}
			fs, err := classbench.LoadFilters(rp)
			if err != nil {
				b.Fatal(err)
			}
			rules := classbench.Rules(fs)
			b.Run("compile", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := CompileRules(rules, Options{}); err != nil {
						b.Fatal(err)
					}
				}
			})
			// The final flags' share of the compile.
			b.Run("final", func(b *testing.B) {
				c, err := CompileRules(rules, Options{})
				if err != nil {
					b.Fatal(err)
				}
				boxes := make([]policy.Box, len(rules))
				for i := range rules {
					boxes[i] = rules[i].Box
				}
				tb := tableOfRanges(c)
				n := 0
				for i := range c.Ranges {
					if c.Ranges[i].Final {
						n++
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					setFinal(boxes, c.Ranges, tb)
				}
				b.ReportMetric(float64(n)/float64(len(c.Ranges)), "final-fraction")
			})
		})
	}
}
