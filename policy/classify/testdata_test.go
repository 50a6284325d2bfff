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

func TestFromPolicy(t *testing.T) {
	p, err := policy.LoadFile("../testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Decorrelated() == nil || s.Fallback != "" {
		t.Fatalf("decorrelated mode: entries %v, fallback %q", s.Decorrelated(), s.Fallback)
	}
	pk := policy.NewPacketFromStrings("192.0.2.5", "198.51.100.1", policy.ProtoTCP, 5000, 22)
	if v := s.Lookup(&pk); v.Name != "dc" || v.SA != "tunnel-dc" || v.Action != policy.ActionProtect {
		t.Errorf("verdict %+v", v)
	}
	p.MaxEntries = 3
	if s, err = FromPolicy(p); err != nil || s.Fallback == "" || s.Decorrelated() != nil {
		t.Fatalf("over the bound: %v, fallback %q", err, s.Fallback)
	}
	if v := s.Lookup(&pk); v.Name != "dc" {
		t.Errorf("fallback verdict %+v", v)
	}
}
