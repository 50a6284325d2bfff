package classify

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/classbench"
)

// sharedDir is the shared ClassBench folder, relative to this package.
const sharedDir = "../../../shared/classbench"

func loadShared(t testing.TB, name string) ([]policy.Rule, []classbench.Header) {
	t.Helper()
	rules := filepath.Join(sharedDir, "hypersplit/rules", name)
	if _, err := os.Stat(rules); err != nil {
		t.Skipf("shared ClassBench data not available (%v); it lives in ../shared/classbench from the repo root", err)
	}
	fs, err := classbench.LoadFilters(rules)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := classbench.LoadTrace(filepath.Join(sharedDir, "hypersplit/traces", name+"_trace"))
	if err != nil {
		t.Fatal(err)
	}
	return classbench.Rules(fs), hs
}

func ruleLine(v policy.Verdict) int {
	if v.Rule < 0 {
		return -1
	}
	n, _ := strconv.Atoi(v.Name[1:])
	return n
}

// checkTrace compares the set's answer with the trace's expected rule for
// every header.
func checkTrace(t *testing.T, lookup func(*policy.Packet) policy.Verdict, hs []classbench.Header) {
	t.Helper()
	bad := 0
	for i := range hs {
		if got := ruleLine(lookup(&hs[i].Packet)); got != hs[i].Match {
			if bad < 5 {
				t.Errorf("header %d (%v): rule %d, want %d", i+1, hs[i].Packet, got, hs[i].Match)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d headers mismatched", bad, len(hs))
	}
}

func TestSharedClassBench(t *testing.T) {
	for _, tc := range []struct {
		name     string
		decor    bool
		limit    int
		fallback bool
	}{
		{"acl1_1K", true, 100000, false},
		{"ipc1_1K", true, 100000, false},
		{"fw1_1K", true, 50000, true},
		{"fw1_1K", false, 0, false},
		{"acl1_10K", true, 100000, false},
		{"ipc1_10K", false, 0, false},
		{"fw1_10K", false, 0, false},
	} {
		t.Run(tc.name+"/decorrelate="+strconv.FormatBool(tc.decor), func(t *testing.T) {
			rules, hs := loadShared(t, tc.name)
			s, err := Build(rules, tc.decor, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if (s.Fallback != "") != tc.fallback {
				t.Errorf("fallback %q, want fallback=%v", s.Fallback, tc.fallback)
			}
			t.Logf("%d rules in %d tables", len(rules), s.Classifier().Tables())
			checkTrace(t, s.Lookup, hs)
			if d := s.Decorrelated(); d != nil {
				c, vs, err := BuildDisjoint(d)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d entries in %d tables", d.Len(), c.Tables())
				checkTrace(t, func(p *policy.Packet) policy.Verdict {
					if v, ok := c.Lookup(p); ok {
						return vs[v]
					}
					return policy.NoMatch
				}, hs)
			}
		})
	}
}
