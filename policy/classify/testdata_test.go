package classify

import (
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/classbench"
)

// TestTestdataClassBench runs on the ClassBench subsets shipped in
// policy/classbench/testdata, so it never skips.
func TestTestdataClassBench(t *testing.T) {
	for _, name := range []string{"acl1_300", "fw1_300"} {
		t.Run(name, func(t *testing.T) {
			fs, err := classbench.LoadFilters(filepath.Join("../classbench/testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			hs, err := classbench.LoadTrace(filepath.Join("../classbench/testdata", name+".trace"))
			if err != nil {
				t.Fatal(err)
			}
			rules := classbench.Rules(fs)
			s, err := Build(rules, true, 200000)
			if err != nil {
				t.Fatal(err)
			}
			if s.Decorrelated() == nil {
				t.Fatalf("decorrelation did not fit: %s", s.Fallback)
			}
			t.Logf("%d rules -> %d entries; %d tables", len(rules), s.Decorrelated().Len(), s.Classifier().Tables())
			checkTrace(t, s.Lookup, hs)
			checkTrace(t, s.Decorrelated().Lookup, hs)
			c, vs, err := BuildDisjoint(s.Decorrelated())
			if err != nil {
				t.Fatal(err)
			}
			checkTrace(t, func(p *policy.Packet) policy.Verdict {
				if v, ok := c.Lookup(p); ok {
					return vs[v]
				}
				return policy.NoMatch
			}, hs)
		})
	}
}
