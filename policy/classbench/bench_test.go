package classbench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/policy"
)

func benchRules(b *testing.B, name string) []policy.Rule {
	b.Helper()
	path := filepath.Join("testdata", name)
	if _, err := os.Stat(path); err != nil {
		path = filepath.Join("../../../shared/classbench/hypersplit/rules", name)
		if _, err := os.Stat(path); err != nil {
			b.Skipf("shared ClassBench data not available (%v)", err)
		}
	}
	fs, err := LoadFilters(path)
	if err != nil {
		b.Fatal(err)
	}
	return Rules(fs)
}

// BenchmarkDecorrelate measures a full decorrelation.
func BenchmarkDecorrelate(b *testing.B) {
	for _, name := range []string{"acl1_300", "fw1_300", "acl1_1K", "ipc1_1K", "acl1_10K"} {
		b.Run(name, func(b *testing.B) {
			rules := benchRules(b, name)
			b.ReportAllocs()
			for b.Loop() {
				d, err := policy.Decorrelate(rules, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(d.Len()), "entries")
			}
		})
	}
}

// BenchmarkDecorrelateInsert measures one incremental insert and remove of a
// narrowed rule at the top of the set, against BenchmarkDecorrelate's full
// rebuild.
func BenchmarkDecorrelateInsert(b *testing.B) {
	for _, name := range []string{"acl1_1K", "acl1_10K"} {
		b.Run(name, func(b *testing.B) {
			rules := benchRules(b, name)
			d, err := policy.Decorrelate(rules, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			r := rules[len(rules)/2]
			r.Name, r.Precedence = "ike-child", -1
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Insert(r); err != nil {
					b.Fatal(err)
				}
				if _, err := d.Remove(r.Name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
