package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/classbench"
)

const sharedDir = "../../../shared/classbench"

// TestSharedClassBench compiles the ClassBench sets and checks the reference
// BPF lookup against every trace header's expected rule.
func TestSharedClassBench(t *testing.T) {
	for _, name := range []string{"acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"} {
		t.Run(name, func(t *testing.T) {
			rp := filepath.Join(sharedDir, "hypersplit/rules", name)
			if _, err := os.Stat(rp); err != nil {
				t.Skipf("shared ClassBench data not available (%v); it lives in ../shared/classbench from the repo root", err)
			}
			fs, err := classbench.LoadFilters(rp)
			if err != nil {
				t.Fatal(err)
			}
			hs, err := classbench.LoadTrace(filepath.Join(sharedDir, "hypersplit/traces", name+"_trace"))
			if err != nil {
				t.Fatal(err)
			}
			rules := classbench.Rules(fs)
			c, err := CompileRules(rules, Options{})
			if errors.Is(err, ErrTooLargeForBPF) {
				t.Logf("%s: %v (flows punted to userspace)", name, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			finals := checkFinal(t, name, rules, c)
			t.Logf("%s: %d rules -> %d tables, %d keys, %d final", name, len(rules), len(c.Tables), len(c.Keys), finals)
			bad := 0
			for i := range hs {
				v := c.Verdict(c.Lookup(&hs[i].Packet))
				if v.Rule+1 != hs[i].Match {
					if bad < 5 {
						t.Errorf("header %d: rule %d, want %d", i+1, v.Rule+1, hs[i].Match)
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d mismatched", bad, len(hs))
			}
			_ = policy.NoMatch
		})
	}
}
