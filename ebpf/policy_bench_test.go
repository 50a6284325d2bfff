package ebpf

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/espy-dpi/espy/policy"
	pbpf "github.com/espy-dpi/espy/policy/bpf"
	"github.com/espy-dpi/espy/policy/classbench"
)

// sharedClassBench is the shared ClassBench data, from the ebpf directory of
// a worktree next to ../shared.
const sharedClassBench = "../../shared/classbench/hypersplit"

// benchTracePackets is how many trace headers a benchmark cycles over.
const benchTracePackets = 4096

func loadClassBench(b *testing.B, name string) ([]policy.Rule, []policy.Packet) {
	b.Helper()
	rp := filepath.Join(sharedClassBench, "rules", name)
	if _, err := os.Stat(rp); err != nil {
		b.Skipf("shared ClassBench data not available (%v); it lives in ../shared/classbench from the repo root", err)
	}
	fs, err := classbench.LoadFilters(rp)
	if err != nil {
		b.Fatal(err)
	}
	hs, err := classbench.LoadTrace(filepath.Join(sharedClassBench, "traces", name+"_trace"))
	if err != nil {
		b.Fatal(err)
	}
	var pk []policy.Packet
	for i := 0; i < len(hs) && len(pk) < benchTracePackets; i++ {
		p := hs[i].Packet
		if wireable(&p) {
			pk = append(pk, p)
		}
	}
	return classbench.Rules(fs), pk
}

// BenchmarkPolicyLookup runs ClassBench traces through the XDP program with
// the compiled rules published, inside the kernel (BPF_PROG_TEST_RUN, 1000
// repeats a frame: each run syscall costs about a millisecond of XDP
// dispatcher update), and reports the kernel-measured ns per packet of the
// whole program. The "none" variant runs the same frames with no policy
// published: the difference is the compiled-SPD lookup.
func BenchmarkPolicyLookup(b *testing.B) {
	for _, name := range []string{"acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K"} {
		b.Run(name, func(b *testing.B) {
			rules, pk := loadClassBench(b, name)
			c, err := pbpf.CompileRules(rules, pbpf.Options{})
			if err != nil {
				b.Skipf("%s: %v", name, err)
			}
			benchPolicyFrames(b, c, pk)
			b.ReportMetric(float64(len(c.Tables)), "tables")
		})
	}
	b.Run("none", func(b *testing.B) {
		_, pk := loadClassBench(b, "acl1_10K")
		benchPolicyFrames(b, nil, pk)
	})
}

func benchPolicyFrames(b *testing.B, c *pbpf.Compiled, pk []policy.Packet) {
	benchPolicy(b, Config{}, c, pk)
}

// benchPolicy loads the program with cfg and policy c (none when nil) and
// reports the kernel-measured ns per packet over the frames of pk.
func benchPolicy(b *testing.B, cfg Config, c *pbpf.Compiled, pk []policy.Packet) *Program {
	requireBPF(b)
	prog := policyProgram(b, cfg)
	if c != nil {
		if err := prog.LoadPolicy(c); err != nil {
			b.Fatal(err)
		}
	}
	frames := make([][]byte, len(pk))
	for i := range pk {
		frames[i] = PolicyFrame(&pk[i], policySPI, 12)
	}
	const repeat = 1000
	var total float64
	var n int
	for i := 0; b.Loop(); i++ {
		_, d, err := prog.XDP().Benchmark(frames[i%len(frames)], repeat, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += float64(d.Nanoseconds())
		n++
	}
	b.ReportMetric(total/float64(n), "ns/packet")
	return prog
}

// TestMeasurePolicyLookup checks that the function policycmd calls works.
func TestMeasurePolicyLookup(t *testing.T) {
	requireBPF(t)
	rules := atomicPolicy(6, policy.ActionAllow)
	c, err := pbpf.CompileRules(rules, pbpf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pk := []policy.Packet{policy.NewPacketFromStrings("192.0.2.10", "198.51.100.1", 6, 1000, 80)}
	m, err := measurePolicy(c, pk, 10, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", m)
	if m.Total <= 0 || m.Total > 1e6 || m.Baseline <= 0 || m.Packets != 1 {
		t.Errorf("%+v", m)
	}
}

// BenchmarkPolicyCache measures the whole program per packet for a decided
// null flow with a 10K-rule compiled SPD (ClassBench, ordered; the first
// 4096 trace headers), kernel-measured, each frame repeated 1000 times:
//
//   - hit: the SPD cache on; all but the first run of a frame are hits;
//   - walk: the cache off (Config.NoSPDCache): the compiled lookup on every
//     packet, as before the cache;
//   - none: no policy published (exact stage and default only, no cache
//     lookup either): hit minus none is what a hit costs.
//
// A miss costs a walk, the failed cache lookup and the insert.
func BenchmarkPolicyCache(b *testing.B) {
	for _, name := range []string{"acl1_10K", "fw1_10K", "ipc1_10K"} {
		rules, pk := loadClassBench(b, name)
		c, err := pbpf.CompileRules(rules, pbpf.Options{})
		if err != nil {
			b.Skipf("%s: %v", name, err)
		}
		b.Run(name+"/hit", func(b *testing.B) { benchPolicyCache(b, c, pk, false) })
		b.Run(name+"/walk", func(b *testing.B) { benchPolicyCache(b, c, pk, true) })
		b.Run(name+"/none", func(b *testing.B) { benchPolicyCache(b, nil, pk, false) })
	}
}

func benchPolicyCache(b *testing.B, c *pbpf.Compiled, pk []policy.Packet, noCache bool) {
	prog := benchPolicy(b, Config{NoSPDCache: noCache}, c, pk)
	st, err := prog.PolicyStats()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st[PolicyCacheHit])/float64(st[PolicyCacheHit]+st[PolicyHit]+st[PolicyMiss]+1), "hit-ratio")
}

// BenchmarkPolicyFinal is the same-process A/B of the final flags: two
// programs, SPD cache off so every packet walks the compiled SPD, one
// loaded with the compiled 10K-rule set and one with the same set with
// every final flag cleared (the full walk, as before the flags). Each
// iteration runs the same frame on both, 1000 repeats each, so machine
// noise hits both alike; final and full are kernel-measured ns per packet
// of the whole program, ratio is final/full.
func BenchmarkPolicyFinal(b *testing.B) {
	for _, name := range []string{"acl1_10K", "fw1_10K", "ipc1_10K"} {
		b.Run(name, func(b *testing.B) {
			rules, pk := loadClassBench(b, name)
			c, err := pbpf.CompileRules(rules, pbpf.Options{})
			if err != nil {
				b.Skipf("%s: %v", name, err)
			}
			full := *c
			full.Ranges = slices.Clone(c.Ranges)
			for i := range full.Ranges {
				full.Ranges[i].Final = false
			}
			requireBPF(b)
			progs := [2]*Program{policyProgram(b, Config{NoSPDCache: true}), policyProgram(b, Config{NoSPDCache: true})}
			for i, cc := range []*pbpf.Compiled{c, &full} {
				if err := progs[i].LoadPolicy(cc); err != nil {
					b.Fatal(err)
				}
			}
			frames := make([][]byte, len(pk))
			for i := range pk {
				frames[i] = PolicyFrame(&pk[i], policySPI, 12)
			}
			const repeat = 1000
			var total [2]float64
			n := 0
			for i := 0; b.Loop(); i++ {
				// Alternate which goes first, against order effects.
				for k := range 2 {
					j := (i + k) % 2
					_, d, err := progs[j].XDP().Benchmark(frames[i%len(frames)], repeat, nil)
					if err != nil {
						b.Fatal(err)
					}
					total[j] += float64(d.Nanoseconds())
				}
				n++
			}
			b.ReportMetric(total[0]/float64(n), "final-ns/packet")
			b.ReportMetric(total[1]/float64(n), "full-ns/packet")
			b.ReportMetric(total[0]/total[1], "ratio")
		})
	}
}
