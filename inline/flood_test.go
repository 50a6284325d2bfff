package inline_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/espsynth"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

// Flood sizes: bounded so that the test stays under a minute on a shared
// 2-core machine (docs/inline-perf.md has the figures).
const (
	floodFrames = 1_500_000        // one-packet flows
	floodBudget = 25 * time.Second // the flood stops here even if short
	floodBatch  = 256              // frames per sendmmsg
	realPerMs   = 3                // packets of the real flow per millisecond
	floodShards = 64               // flowcache's default: Capacity may be exceeded by this many for a moment
	// seenInterval is the daemon's (sample.go): how often it marks the
	// flows the fast path counted as seen in the flow cache.
	seenInterval = 100 * time.Millisecond
)

// floodSizes are the daemon's sizes and sampling for a flood.
type floodSizes struct {
	rate, burst          int           // samples per second per CPU, burst
	verdicts, pendingMap int           // BPF maps
	capacity, pending    int           // flow cache
	sweep                time.Duration // sweep interval: refreshes decided flows the fast path handles alone
	frames               int           // one-packet flows to send; 0 means floodFrames
	overflow             bool          // the flood must turn the decided table over at least once
}

func (z floodSizes) yaml() string {
	return fmt.Sprintf("sampling: {rate: %d, burst: %d}\nmaps: {verdicts: %d, pending: %d}\nflows: {capacity: %d, pending: %d, sweep_interval: %v}\n",
		z.rate, z.burst, z.verdicts, z.pendingMap, z.capacity, z.pending, z.sweep)
}

// The real flow: its own outer addresses and SPI, so no flood frame can
// share its key.
var (
	realSrc = netip.MustParseAddr("203.0.113.7")
	realDst = netip.MustParseAddr("203.0.113.8")
)

const realSPI = 0x00c0ffee

// A second real flow starts in the middle of the flood.
var (
	lateSrc = netip.MustParseAddr("203.0.113.9")
	lateDst = netip.MustParseAddr("203.0.113.10")
)

const latePerMs = 1

// realFlow returns n frames of one ESP-NULL flow (tunnel mode, inner HTTP).
func realFlow(t *testing.T, n int, src, dst netip.Addr, spi uint32) [][]byte {
	t.Helper()
	g, err := espsynth.NewGenerator(3, espsynth.Config{Flows: []espsynth.Flow{{
		Initiator: src, Responder: dst, SPI: [2]uint32{spi, spi + 1},
		Mode: espsynth.Tunnel, Traffic: espsynth.TrafficHTTP, Cipher: espsynth.CipherNULL,
		Auth: espsynth.AuthHMACSHA256, Packets: n, OneWay: true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	frames := make([][]byte, 0, n)
	for {
		f, _, err := g.AppendPacket(nil)
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
}

// vethDrops returns the frames the veth dropped on the way from A to E,
// before the XDP program saw them: A's end counts them as transmit drops
// when E's ring is full. (E's receive drops are frames the program passed
// and the stack then dropped.)
func vethDrops(t *testing.T, l *lab) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "-n", l.nsA, "-s", "-j", "link", "show", "pa0").Output()
	if err != nil {
		t.Fatalf("ip -s link show pa0: %v", err)
	}
	var links []struct {
		Stats64 struct {
			TX struct{ Dropped uint64 }
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show pa0: %v: %s", err, out)
	}
	return links[0].Stats64.TX.Dropped
}

// spiFlood sends over a million one-packet ESP flows (three in four
// encrypted-looking, which stay pending; one in four ESP-NULL, decided on
// their one frame) while a real ESP-NULL flow runs at a few packets per
// millisecond, and checks throughout that the real flow keeps its verdict in
// the BPF map and in the flow cache, that the flow cache and the BPF verdict
// map stay within their configured sizes, and at the end that every frame
// was counted under exactly one exit reason, the samples that were not
// delivered among them.
func spiFlood(t *testing.T, z floodSizes) {
	l := newLab(t)
	realFrames := realFlow(t, int(floodBudget/time.Millisecond)*realPerMs+1000, realSrc, realDst, realSPI)
	lateFrames := realFlow(t, int(floodBudget/time.Millisecond)*latePerMs+1000, lateSrc, lateDst, realSPI)
	enc := template(t, espsynth.CipherAESGCM, 0x02000000)
	null := template(t, espsynth.CipherNULL, 0x02000000)
	d := l.start(t, z.yaml())
	s := l.sender(t)

	// The real flow is decided first.
	realKey, err := ebpf.NewFlowKey(realSrc, realDst, realSPI, ebpf.EncapNone, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	realCacheKey := flowcache.NewKey(realSrc, realDst, realSPI)
	lateKey, err := ebpf.NewFlowKey(lateSrc, lateDst, realSPI, ebpf.EncapNone, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.send(realFrames[0]); err != nil {
		t.Fatal(err)
	}
	realSent := 1
	for deadline := time.Now().Add(2 * time.Second); ; {
		if v, err := d.Program().Verdict(realKey); err == nil {
			if v.Kind != ebpf.VerdictNull {
				t.Fatalf("real flow decided %d, want null", v.Kind)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("real flow got no verdict before the flood")
		}
		time.Sleep(time.Millisecond)
	}
	// A live flow has traffic: packets, which the fast path counts and the
	// daemon's next look at its seen bytes reports to the flow cache
	// (every 100 ms), before the flood. It keeps sending until the daemon
	// has seen it: the revocation check's look (ebpf.ActiveFlows, once a
	// second) clears the same seen bytes, so a burst can go unreported.
	trafficAt := time.Now().UnixNano()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if f, ok := d.Cache().Lookup(realCacheKey); ok && f.Last > trafficAt {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not mark the real flow seen within 5 s of its packets (%d sent)", realSent)
		}
		if err := s.send(realFrames[realSent]); err != nil {
			t.Fatal(err)
		}
		realSent++
	}

	check := func(when string) bool {
		t.Helper()
		ok := true
		if v, err := d.Program().Verdict(realKey); err != nil || v.Kind != ebpf.VerdictNull {
			t.Errorf("%s: real flow's BPF verdict %+v, %v; want null", when, v, err)
			ok = false
		}
		if f, found := d.Cache().Lookup(realCacheKey); !found || f.Verdict.Class != heuristics.Null {
			t.Errorf("%s: real flow in the flow cache: %v, found %v; want null", when, f.Verdict.Class, found)
			ok = false
		}
		st := d.Cache().Stats()
		if st.Pending > z.pending {
			t.Errorf("%s: %d pending flows in the cache, capacity %d", when, st.Pending, z.pending)
			ok = false
		}
		if st.Decided > z.capacity+floodShards {
			t.Errorf("%s: %d decided flows in the cache, capacity %d", when, st.Decided, z.capacity)
			ok = false
		}
		return ok
	}

	bufs := make([][]byte, floodBatch)
	for i := range bufs {
		if i%4 == 3 {
			bufs[i] = slices.Clone(null)
		} else {
			bufs[i] = slices.Clone(enc)
		}
	}
	var (
		sent, maxVerdicts int
		checks, aborted   int
		failed            bool
		lateStart         time.Time
		lateSent          int
		lateDecided       time.Duration
		lateBefore        int // late-flow packets sent until its verdict was seen
	)
	start := time.Now()
	nextCheck, nextCount := start, start
	frames := z.frames
	if frames == 0 {
		frames = floodFrames
	}
	for sent < frames && time.Since(start) < floodBudget {
		m := min(floodBatch, frames-sent)
		for j := range m {
			binary.BigEndian.PutUint32(bufs[j][spiOff:], 0x02000000+uint32(sent+j))
		}
		n, err := s.sendBatch(bufs[:m])
		if err != nil {
			t.Fatalf("sendmmsg: %v", err)
		}
		sent += n
		// The real flow: realPerMs packets per millisecond since start.
		for due := int(time.Since(start)/time.Millisecond)*realPerMs + 1; realSent < due && realSent < len(realFrames); realSent++ {
			if err := s.send(realFrames[realSent]); err != nil {
				t.Fatal(err)
			}
		}
		// The late flow: from half the flood on, until its verdict is
		// in the map.
		if sent >= frames/2 && lateSent == 0 {
			lateStart = time.Now()
		}
		if !lateStart.IsZero() {
			for due := int(time.Since(lateStart)/time.Millisecond)*latePerMs + 1; lateSent < due && lateSent < len(lateFrames); lateSent++ {
				if err := s.send(lateFrames[lateSent]); err != nil {
					t.Fatal(err)
				}
			}
			if lateDecided == 0 {
				if _, err := d.Program().Verdict(lateKey); err == nil {
					lateDecided, lateBefore = time.Since(lateStart), lateSent
				}
			}
		}
		if now := time.Now(); now.After(nextCheck) && !failed {
			nextCheck = now.Add(250 * time.Millisecond)
			checks++
			failed = !check("during the flood")
		}
		// Walking the verdict map while the flood churns it takes up to
		// a few hundred milliseconds (the walk restarts when its cursor
		// key is evicted): every two seconds only.
		if now := time.Now(); now.After(nextCount) {
			n, err := countVerdicts(d)
			if err != nil {
				aborted++
			}
			maxVerdicts = max(maxVerdicts, n)
			nextCount = time.Now().Add(2 * time.Second)
		}
	}
	floodTime := time.Since(start)
	// Let the sample reader drain, then look again.
	time.Sleep(500 * time.Millisecond)
	check("after the flood")
	n, err := countVerdicts(d)
	if err != nil {
		aborted++
	}
	maxVerdicts = max(maxVerdicts, n)
	if aborted > 0 {
		t.Logf("%d walks of the verdict map aborted by the churn (counts up to the abort are used)", aborted)
	}
	if maxVerdicts > z.verdicts {
		t.Errorf("BPF verdict map held %d entries, size %d", maxVerdicts, z.verdicts)
	}

	c, err := d.Program().ExitCounters()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's own IPv6 neighbour discovery on the veth is non-esp.
	var seen uint64
	for r, n := range c {
		if ebpf.ExitReason(r) != ebpf.ExitNonESP {
			seen += n
		}
	}
	drops := vethDrops(t, l)
	total := uint64(sent + realSent + lateSent)
	st := d.Cache().Stats()
	t.Logf("flood: %d one-packet flows in %v (%.0f/s) with %d real-flow packets; %d checks; veth drops %d",
		sent, floodTime.Round(time.Millisecond), float64(sent)/floodTime.Seconds(), realSent, checks, drops)
	t.Logf("exit counters: sampled %d, rate-limited %d, lost %d, over-limit %d, null-allow %d; reader saw %.0f lost",
		c[ebpf.ExitPendingSampled], c[ebpf.ExitSampleRateLimited], c[ebpf.ExitSampleLost], c[ebpf.ExitPendingOverLimit],
		c[ebpf.ExitNullAllow], d.metric(t, "espy_samples_lost_total"))
	t.Logf("flow cache: decided %d (capacity %d), pending %d (capacity %d), decisions %d, evicted %d, pending drops %d; BPF verdicts max %d (size %d)",
		st.Decided, z.capacity, st.Pending, z.pending, st.Decisions, st.Evicted, st.PendingDrops, maxVerdicts, z.verdicts)

	if z.overflow {
		// The table must turn over faster than the daemon looks at the
		// fast path's seen bytes, so that every flood flow is newer than
		// the real flow's latest sighting: least-recently-seen eviction
		// alone then takes the real flow.
		turnover := time.Duration(float64(floodTime) * float64(z.capacity) / float64(st.Evicted))
		t.Logf("the flood turned the decided table over %.1f times, once per %v", float64(st.Evicted)/float64(z.capacity), turnover.Round(time.Millisecond))
		if st.Evicted < 10*uint64(z.capacity) || turnover > seenInterval {
			t.Errorf("the flood evicted %d decided flows from a table of %d in %v: it did not turn the table over ten times, once per %v or faster",
				st.Evicted, z.capacity, floodTime.Round(time.Millisecond), seenInterval)
		}
	}
	switch {
	case lateStart.IsZero():
		t.Errorf("the flood stopped at %d frames, before the late flow was to start", sent)
	case lateDecided == 0:
		t.Errorf("the flow that started during the flood sent %d packets and got no verdict", lateSent)
	default:
		t.Logf("the flow that started during the flood (%d packet/ms) had its verdict after %v and %d packets", latePerMs, lateDecided.Round(time.Millisecond), lateBefore)
		if f, ok := d.Cache().Lookup(flowcache.NewKey(lateSrc, lateDst, realSPI)); ok {
			t.Logf("the daemon took up its first sample %v after its first packet (%d packets over the sample limit)",
				time.Duration(f.First-lateStart.UnixNano()).Round(time.Millisecond), c[ebpf.ExitPendingOverLimit])
		}
	}
	if p := d.log.problems(); len(p) > 0 {
		t.Logf("daemon diagnostics: %v", p)
	}
	if sent < frames/4 {
		t.Errorf("only %d flood frames sent in %v", sent, floodBudget)
	}
	// Every frame the program saw moved exactly one counter.
	if seen > total || seen+drops < total {
		t.Errorf("exit counters sum to %d, veth dropped %d, sent %d", seen, drops, total)
	}
	// Every flood frame is a new flow: sampled, or counted as not sampled.
	// The real flow's first frame was sampled, the others are its null path.
	// The late flow's packets before its verdict count there too.
	undelivered := c[ebpf.ExitSampleRateLimited] + c[ebpf.ExitSampleLost]
	if got := c[ebpf.ExitPendingSampled] + undelivered + c[ebpf.ExitPendingOverLimit]; got+drops < uint64(sent+1) || got > uint64(sent+1+lateSent) {
		t.Errorf("sampled %d + not sampled %d + over limit %d = %d for %d new flows and %d packets of the late one",
			c[ebpf.ExitPendingSampled], undelivered, c[ebpf.ExitPendingOverLimit], got, sent+1, lateSent)
	}
	if got := d.metric(t, "espy_samples_lost_total"); got != float64(c[ebpf.ExitSampleLost]) {
		t.Errorf("espy_samples_lost_total %.0f, the program counted %d lost samples", got, c[ebpf.ExitSampleLost])
	}
	if undelivered == 0 {
		t.Error("the flood was sampled whole: raise floodFrames or lower the sample rate so the limit is exercised")
	}
	if want := uint64(realSent - 1); c[ebpf.ExitNullAllow]+drops < want || c[ebpf.ExitNullAllow] > want+uint64(lateSent) {
		t.Errorf("real flows: %d packets on the null path, want %d and some of the late flow's %d", c[ebpf.ExitNullAllow], want, lateSent)
	}
	if fs, err := d.Program().FlowCounters(realKey); err != nil || fs.Packets+drops < uint64(realSent-1) {
		t.Errorf("real flow counters %+v, %v; sent %d after its verdict", fs, err, realSent-1)
	}
}

// The flood test's sizes: the default sampling, and tables small enough
// that the flood overflows the verdict map (with the ESP-NULL quarter of the
// flood) and the pending pool and map (with the rest). The cache's decided
// table is not overflowed: the flow cache then evicts the real flow now and
// then (see TestSPIFloodDefaultSweep); the bound is still checked.
var testFlood = floodSizes{
	rate: 2000, burst: 64, verdicts: 512, pendingMap: 1024,
	capacity: 5000, pending: 1024, sweep: time.Second,
}

// TestSPIFlood runs the flood with the default sampling settings.
func TestSPIFlood(t *testing.T) {
	spiFlood(t, testFlood)
}

// raisedFlood samples at ten times the default rate, more than userspace
// drains on a small machine: the sample ring stays full and samples are
// lost. The decided table holds the ESP-NULL quarter of the whole flood, so
// it never evicts.
var raisedFlood = floodSizes{
	rate: 20000, burst: 1024, verdicts: 16384, pendingMap: 4096,
	capacity: floodFrames / 4 * 17 / 16, pending: 8192, sweep: time.Second,
}

// TestSPIFloodRaisedRate runs the flood with raisedFlood (the figures are in
// docs/inline-perf.md).
func TestSPIFloodRaisedRate(t *testing.T) {
	spiFlood(t, raisedFlood)
}

// TestSPIFloodDefaultSweep is the raised-rate flood with a decided table
// the flood turns over faster than the daemon refreshes the real flow, and
// the default sweep interval (10 s). The fast path handles a decided flow
// alone; the daemon marks the flows it counted as seen every 100 ms
// (Program.SeenFlows, flowcache.Touch), and least-recently-seen eviction
// took the real flow whenever the 8 flows it compared were all newer than
// that mark: always, once the table turns over in less than 100 ms. The
// flow cache now evicts flows seen once before flows seen again, so the
// flood evicts its own. The table is small (320 flows, 6 a shard) and the
// sampling raised to 100,000/s per CPU so that half the flood (3–11 s here
// under load) turns it over dozens of times, once per 100 ms or faster
// (the test checks that it does; with least-recently-seen eviction the real
// flow is evicted in every run); ESPY_LONG=1 sends the full flood.
func TestSPIFloodDefaultSweep(t *testing.T) {
	z := raisedFlood
	z.rate, z.burst = 100000, 4096
	z.capacity = 320
	z.sweep = 10 * time.Second
	z.overflow = true
	if os.Getenv("ESPY_LONG") == "" {
		z.frames = floodFrames / 2
	}
	spiFlood(t, z)
}

// TestVerdictMapFull decides four times as many flows as the verdict map
// holds and checks that verdicts keep being written: the LRU map evicts the
// oldest, and a new flow still gets its verdict. (With as many counter slots
// as verdicts, every verdict after the map filled failed with "no free flow
// counter slot", for good.)
func TestVerdictMapFull(t *testing.T) {
	l := newLab(t)
	const size = 256
	d := l.start(t, fmt.Sprintf("sampling: {rate: 100000, burst: 4096}\nmaps: {verdicts: %d}\n", size))
	tmpl := template(t, espsynth.CipherNULL, 0x05000000)
	r := blast(t, l, d, tmpl, 0x05000000, 4*size, 2000)
	if r.decisions != 4*size {
		t.Errorf("%d decisions for %d flows", r.decisions, 4*size)
	}
	if r.verdicts > size {
		t.Errorf("%d verdicts in a map of %d", r.verdicts, size)
	}
	s := l.sender(t)
	f := nullFlows(t, 1, 0x06000000)[0]
	if err := s.send(f); err != nil {
		t.Fatal(err)
	}
	k := flowKey(t, frameSPI(f))
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := d.Program().Verdict(k); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Error("a new flow got no verdict once the verdict map had filled")
			break
		}
	}
	if p := d.log.problems(); len(p) > 0 {
		t.Errorf("daemon diagnostics: %v", p)
	}
	t.Logf("%s", r)
}
