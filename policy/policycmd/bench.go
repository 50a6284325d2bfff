package policycmd

import (
	"errors"
	"fmt"
	"github.com/espy-dpi/espy/ebpf"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/bpf"
	"github.com/espy-dpi/espy/policy/classbench"
	"github.com/espy-dpi/espy/policy/classify"
)

// batch is the number of lookups timed together: one clock read per lookup
// would cost more than the classifier's lookup itself.
const batch = 32

func bench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", "--classbench RULES [--trace TRACE] [--max-entries N]", stderr)
	rulesPath := fs.String("classbench", "", "ClassBench filter `file` (required)")
	tracePath := fs.String("trace", "", "ClassBench header trace `file`; without it, packets are drawn from the rules and checked against the linear scan")
	maxEntries := fs.Int("max-entries", policy.DefaultMaxEntries, "decorrelation bound; above it the classifier serves the ordered rules")
	rounds := fs.Int("rounds", 3, "timing passes over the trace")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *rulesPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return ExitUsage
	}
	filters, err := classbench.LoadFilters(*rulesPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitInvalid
	}
	rules := classbench.Rules(filters)
	var hs []classbench.Header
	if *tracePath != "" {
		if hs, err = classbench.LoadTrace(*tracePath); err != nil {
			fmt.Fprintln(stderr, err)
			return ExitInvalid
		}
	} else {
		hs = sampleHeaders(rules, 10)
		fmt.Fprintf(stdout, "trace: none given; %d headers drawn from the rules, expected rule from the linear scan\n", len(hs))
	}
	pk := make([]policy.Packet, len(hs))
	for i := range hs {
		pk[i] = hs[i].Packet
	}

	// build_ms is the time until lookups can be served: the classifier over
	// the ordered rules, which does not wait for decorrelation.
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	set, err := classify.Build(rules, false, 0)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitInvalid
	}
	build := time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	fmt.Fprintf(stdout, "classifier: TupleMerge over %d ordered rules, %d tuple tables (collision limit %d), built in %.1f ms, heap %.1f MiB\n",
		set.Len(), set.Classifier().Tables(), set.Classifier().CollisionLimit(), ms(build), float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/(1<<20))

	t0 = time.Now()
	d, derr := policy.Decorrelate(rules, *maxEntries)
	dtime := time.Since(t0)
	entries := len(rules)
	switch {
	case derr == nil:
		entries = d.Len()
		runtime.GC()
		runtime.ReadMemStats(&m0)
		fmt.Fprintf(stdout, "decorrelation: %d rules -> %d disjoint entries (%.1fx) in %.1f ms, heap %.1f MiB\n",
			len(rules), d.Len(), float64(d.Len())/float64(len(rules)), ms(dtime), float64(int64(m0.HeapAlloc)-int64(m1.HeapAlloc))/(1<<20))
	case errors.Is(derr, policy.ErrDecorrelationBound):
		fmt.Fprintf(stdout, "decorrelation: gave up after %.1f ms: %v\n", ms(dtime), derr)
		fmt.Fprintf(stdout, "decorrelation: not kept; entries= reports the %d ordered rules the classifier serves\n", len(rules))
	default:
		fmt.Fprintln(stderr, derr)
		return ExitInvalid
	}

	var disjoint *classify.Classifier
	var dverdicts []policy.Verdict
	if d != nil {
		t0 = time.Now()
		if disjoint, dverdicts, err = classify.BuildDisjoint(d); err != nil {
			fmt.Fprintln(stderr, err)
			return ExitInvalid
		}
		fmt.Fprintf(stdout, "disjoint: first-hit TupleMerge over the %d entries, %d tuple tables, built in %.1f ms\n", disjoint.Len(), disjoint.Tables(), ms(time.Since(t0)))
	}
	disjointLookup := func(p *policy.Packet) policy.Verdict {
		if v, ok := disjoint.Lookup(p); ok {
			return dverdicts[v]
		}
		return policy.NoMatch
	}

	t0 = time.Now()
	compiled, bpfErr := bpf.CompileRules(rules, bpf.Options{})
	if bpfErr != nil {
		fmt.Fprintf(stdout, "bpf: %v: these flows would be punted to userspace\n", bpfErr)
	} else {
		fmt.Fprintf(stdout, "bpf: compiled %d ranges into %d tables, %d keys in %.1f ms (limits: %d tables, %d keys, %d ranges, bucket %d)\n",
			len(compiled.Ranges), len(compiled.Tables), len(compiled.Keys), ms(time.Since(t0)), bpf.MaxTables, bpf.MaxKeys, bpf.MaxRanges, bpf.Bucket)
	}

	mismatches := 0
	report := func(kind string, i int, got int) {
		if mismatches < 10 {
			fmt.Fprintf(stdout, "mismatch: %s: header %d (%s): rule %d, want %d\n", kind, i+1, hs[i].Packet, got, hs[i].Match)
		}
		mismatches++
	}
	for i := range hs {
		want := hs[i].Match
		if got := line(policy.LinearLookup(rules, &pk[i])); got != want {
			report("linear", i, got)
		}
		if got := line(set.Lookup(&pk[i])); got != want {
			report("classifier", i, got)
		}
		if compiled != nil {
			if got := line(compiled.Verdict(compiled.Lookup(&pk[i]))); got != want {
				report("bpf reference", i, got)
			}
		}
		if disjoint != nil {
			if got := line(disjointLookup(&pk[i])); got != want {
				report("disjoint", i, got)
			}
		}
	}

	lin := policy.NewLinear(rules)
	linNS := timeLookups(pk, *rounds, func(p *policy.Packet) { lin.Lookup(p) })
	clsNS := timeLookups(pk, *rounds, func(p *policy.Packet) { set.Lookup(p) })
	var disNS stats
	if disjoint != nil {
		disNS = timeLookups(pk, *rounds, func(p *policy.Packet) { disjointLookup(p) })
	}
	var refNS stats
	if compiled != nil {
		refNS = timeLookups(pk, *rounds, func(p *policy.Packet) { compiled.Lookup(p) })
	}
	cache := classify.NewCache(set, 1<<16)
	cacheNS := timeLookups(pk, *rounds, func(p *policy.Packet) { cache.Lookup(p) })
	fmt.Fprintf(stdout, "lookup ns (median/p99 of %d-lookup batch means): linear %.0f/%.0f classifier %.0f/%.0f disjoint %.0f/%.0f cached %.0f/%.0f (cache hit rate %.2f) bpf-go-reference %.0f/%.0f\n",
		batch, linNS.med, linNS.p99, clsNS.med, clsNS.p99, disNS.med, disNS.p99, cacheNS.med, cacheNS.p99,
		float64(cache.Hits)/float64(max(1, cache.Hits+cache.Misses)), refNS.med, refNS.p99)
	fmt.Fprintf(stdout, "lookup ns (mean by process CPU time): linear %.0f classifier %.0f disjoint %.0f cached %.0f bpf-go-reference %.0f\n",
		linNS.cpu, clsNS.cpu, disNS.cpu, cacheNS.cpu, refNS.cpu)
	// bpf_ns is the compiled SPD's lookup in the XDP program (its share of
	// the program's time over the trace's headers, in kernel test runs);
	// it needs root and BPF, and is "-" where they are missing.
	bpfNS := "-"
	if compiled != nil {
		if ns, err := ebpf.MeasurePolicyLookup(compiled, pk); err != nil {
			fmt.Fprintf(stdout, "bpf: in-kernel lookup not measured: %v\n", err)
		} else {
			bpfNS = fmt.Sprintf("%.0f", ns)
		}
	}
	each := timeEach(pk, func(p *policy.Packet) { set.Lookup(p) })
	fmt.Fprintf(stdout, "p99: linear_ns=%.0f classifier_ns=%.0f (99th percentile of %d-lookup batch means; medians on the next line); classifier timed one lookup at a time: median %.0f p99 %.0f ns (clock cost %.0f ns subtracted)\n",
		linNS.p99, clsNS.p99, batch, each.med, each.p99, each.cpu)
	speedup := linNS.med / max(clsNS.med, 0.001)
	fmt.Fprintf(stdout, "bench: rules=%d entries=%d build_ms=%.1f linear_ns=%.0f classifier_ns=%.0f speedup=%.1f mismatches=%d bpf_ns=%s\n",
		len(rules), entries, ms(build), linNS.med, clsNS.med, speedup, mismatches, bpfNS)
	if mismatches > 0 {
		return ExitInvalid
	}
	return ExitOK
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// line returns the ClassBench line number of the rule a verdict names.
func line(v policy.Verdict) int {
	if v.Rule < 0 || len(v.Name) < 2 {
		return -1
	}
	n, err := strconv.Atoi(v.Name[1:])
	if err != nil {
		return -1
	}
	return n
}

// stats are per-lookup figures: the median and 99th percentile of batch
// means by the wall clock, and the mean by process CPU time, which leaves out
// the time the process was not running (a loaded machine preempts often).
type stats struct{ med, p99, cpu float64 }

// timeLookups times fn over pk in batches and returns the median and 99th
// percentile of the per-lookup mean of each batch.
func timeLookups(pk []policy.Packet, rounds int, fn func(*policy.Packet)) stats {
	n := len(pk) / batch
	if n == 0 {
		return stats{}
	}
	per := make([]float64, 0, n*rounds)
	cpu0 := cpuTime()
	for r := 0; r < rounds; r++ {
		for b := 0; b < n; b++ {
			ps := pk[b*batch : (b+1)*batch]
			t0 := time.Now()
			for i := range ps {
				fn(&ps[i])
			}
			per = append(per, float64(time.Since(t0).Nanoseconds())/batch)
		}
	}
	cpu := float64(cpuTime()-cpu0) / float64(n*batch*rounds)
	slices.Sort(per)
	return stats{per[len(per)/2], per[len(per)*99/100], cpu}
}

// timeEach times every lookup of fn over pk on its own and returns the
// median and 99th percentile, less the median cost of reading the clock
// twice, which it returns in cpu. The tail a batch mean smooths out (a
// cache miss on one lookup of 32) shows here.
func timeEach(pk []policy.Packet, fn func(*policy.Packet)) stats {
	if len(pk) == 0 {
		return stats{}
	}
	clock := make([]float64, 10000)
	for i := range clock {
		t0 := time.Now()
		clock[i] = float64(time.Since(t0).Nanoseconds())
	}
	slices.Sort(clock)
	over := clock[len(clock)/2]
	per := make([]float64, len(pk))
	for i := range pk {
		t0 := time.Now()
		fn(&pk[i])
		per[i] = float64(time.Since(t0).Nanoseconds())
	}
	slices.Sort(per)
	return stats{max(0, per[len(per)/2]-over), max(0, per[len(per)*99/100]-over), over}
}

// sampleHeaders draws k packets inside each rule (its low corner and random
// interior points), shuffled, with the expected rule from the linear scan.
func sampleHeaders(rules []policy.Rule, k int) []classbench.Header {
	rng := rand.New(rand.NewPCG(1, 2))
	var out []classbench.Header
	for i := range rules {
		for j := 0; j < k; j++ {
			p, ok := policy.PointIn(&rules[i].Box, rng, j == 0)
			if !ok {
				continue
			}
			out = append(out, classbench.Header{Packet: p, Match: line(policy.LinearLookup(rules, &p))})
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// cpuTime returns the process's user and system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
