package inline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/espy-dpi/espy/ebpf"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
)

// TestRevokerRule checks the revoker's windows with the engine's default
// Revocation settings (1 s and 50%, 10 s and 95%, MinBad 16) on hand-made
// counter moves, one look per second.
func TestRevokerRule(t *testing.T) {
	cfg := heuristics.New(heuristics.Config{}).Config().Revocation
	fk := flowcache.NewKey(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.1"), 0x1234)
	// run feeds one look per move and returns the look (1-based) that
	// withdrew the verdict, or 0.
	run := func(moves ...revCount) int {
		rv := newRevoker(cfg)
		for i, m := range moves {
			rv.tick++
			g, _, _ := rv.judge(fk, m)
			rv.forget()
			if g {
				return i + 1
			}
		}
		return 0
	}
	rep := func(n int, m revCount) []revCount {
		out := make([]revCount, n)
		for i := range out {
			out[i] = m
		}
		return out
	}
	for _, c := range []struct {
		name  string
		moves []revCount
		want  int
	}{
		{"fast: 16 of 32", []revCount{{100, 0}, {32, 16}}, 2},
		{"fast: 15 of 15, under MinBad", []revCount{{15, 15}}, 0},
		{"fast: 16 of 33, under half", []revCount{{33, 16}}, 0},
		{"slow: 2 of 2 a second reaches MinBad at the 8th", rep(12, revCount{2, 2}), 8},
		{"slow: 2 of 3 a second, not over 95%", rep(12, revCount{3, 2}), 0},
		{"slow: 15 then 1 nine seconds later", append(append([]revCount{{15, 15}}, rep(8, revCount{})...), revCount{1, 1}), 10},
		{"slow: 15 then 1 ten seconds later, out of the window", append(append([]revCount{{15, 15}}, rep(9, revCount{})...), revCount{1, 1}), 0},
		{"slow: good packets in the window dilute", append([]revCount{{400, 0}}, rep(9, revCount{3, 3})...), 0},
	} {
		if got := run(c.moves...); got != c.want {
			t.Errorf("%s: withdrawn at look %d, want %d (0: never)", c.name, got, c.want)
		}
	}

	// A flow not judged at a look is forgotten: its window starts over.
	rv := newRevoker(cfg)
	rv.tick++
	rv.judge(fk, revCount{15, 15})
	rv.tick++
	rv.forget()
	if len(rv.flows) != 0 {
		t.Fatalf("window kept for a flow not seen: %v", rv.flows)
	}
	if g, _, slow := rv.judge(fk, revCount{1, 1}); g || slow != (revCount{1, 1}) {
		t.Errorf("after forget: garbage %v, slow window %+v", g, slow)
	}
}

// revokeLab is a daemon with a loaded fast path (not attached) and n null
// flows decided from their samples, SPIs 0x1001 on; frame returns a packet
// of the flow with SPI spi, with garbage (a pad length past the payload)
// if junk.
func revokeLab(tb testing.TB, n int) (d *Daemon, frame func(spi uint32, junk bool) []byte) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to load the XDP program (run as root, as CI does)")
	}
	prog, err := ebpf.Load(ebpf.Config{VerdictEntries: 2 * n, NoRateLimit: true})
	if err != nil {
		tb.Skipf("BPF not available: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	d, one, tmpl := newFlowSamples(tb)
	d.prog = prog
	for range n {
		one()
	}
	d.flush()
	d.out.Hold()
	tmpl = slices.Clone(tmpl)
	v, err := prog.Verdict(flowKeyOf(tb, 0x1001))
	if err != nil || v.Kind != ebpf.VerdictNull {
		tb.Fatalf("flow 0x1001: verdict %+v, %v", v, err)
	}
	return d, func(spi uint32, junk bool) []byte {
		f := slices.Clone(tmpl)
		binary.BigEndian.PutUint32(f[14+20:], spi)
		if junk {
			f[len(f)-int(v.IcvLen)-2] = 255
		}
		return f
	}
}

func flowKeyOf(tb testing.TB, spi uint32) ebpf.FlowKey {
	k, err := ebpf.NewFlowKey(netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.10"), spi, ebpf.EncapNone, 0, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// xdpRun hands frame to the fast path as if it arrived on the loopback.
func xdpRun(tb testing.TB, d *Daemon, frame []byte) {
	type xdpMd struct {
		Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
	}
	out := make([]byte, len(frame)+256)
	if _, err := d.prog.XDP().Run(&cebpf.RunOptions{Data: frame, DataOut: out, Context: xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: 1}}); err != nil {
		tb.Fatalf("XDP run: %v", err)
	}
}

// TestRevokeTickActive runs the revocation ticker by hand over a real fast
// path: the fast rule withdraws a flow at the first look after its burst of
// garbage; the slow rule withdraws one whose junk is spread over idle looks
// (whose windows move on without reads); a look reads only the flows with
// packets (and those of the look before).
func TestRevokeTickActive(t *testing.T) {
	d, frame := revokeLab(t, 64)
	rv := newRevoker(d.cache.Engine().Config().Revocation)
	minBad := rv.cfg.MinBad
	now := time.Unix(1000, 0)
	tick := func() []flowcache.Key {
		now = now.Add(time.Second)
		return d.revokeTick(rv, now)
	}
	if r := tick(); len(r) != 0 || len(rv.act) != 64 {
		t.Fatalf("first look: revoked %v, read %d flows, want 64", r, len(rv.act))
	}
	fk := func(spi uint32) flowcache.Key {
		return flowcache.NewKey(netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.10"), spi)
	}
	// Fast: MinBad junk packets and as many good ones in one period.
	for range minBad {
		xdpRun(t, d, frame(0x1002, true))
		xdpRun(t, d, frame(0x1002, false))
	}
	// Slow: MinBad-1 junk packets, idle looks, one more junk packet.
	for range minBad - 1 {
		xdpRun(t, d, frame(0x1003, true))
	}
	if r := tick(); !slices.Equal(r, []flowcache.Key{fk(0x1002)}) || len(rv.act) != 2 {
		t.Fatalf("look after the bursts: revoked %v, read %d flows, want 2", r, len(rv.act))
	}
	if _, err := d.prog.Verdict(flowKeyOf(t, 0x1002)); !errors.Is(err, ebpf.ErrNotFound) {
		t.Errorf("revoked flow's fast-path verdict: %v", err)
	}
	for i := range 7 {
		if r := tick(); len(r) != 0 {
			t.Fatalf("idle look %d: revoked %v", i, r)
		}
	}
	if len(rv.act) != 0 || len(rv.flows) != 1 {
		t.Fatalf("idle look read %d flows, kept %d windows (want 0, 1)", len(rv.act), len(rv.flows))
	}
	xdpRun(t, d, frame(0x1003, true))
	if r := tick(); !slices.Equal(r, []flowcache.Key{fk(0x1003)}) {
		t.Fatalf("look after the last junk packet: revoked %v", r)
	}
	if f, ok := d.cache.Lookup(fk(0x1003)); !ok || f.Verdict.Class != heuristics.Unknown {
		t.Errorf("revoked flow in the cache: %+v, %v", f.Verdict, ok)
	}
	// Good packets only: read, not revoked; the window stays, its good
	// packets diluting junk to come.
	xdpRun(t, d, frame(0x1004, false))
	if r := tick(); len(r) != 0 || len(rv.flows) != 1 {
		t.Fatalf("good packet: revoked %v, %d windows %v", r, len(rv.flows), rv.flows)
	}
}

// BenchmarkRevokeTick is one look of the revocation ticker with n null flows
// in the fast path, of which active had packets since the last look (sent
// through the program, untimed). "all" is the look before ActiveFlows
// (revokeTickAll: every null verdict and slot read, every flow looked up).
func BenchmarkRevokeTick(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		d, frame := revokeLab(b, n)
		for _, c := range []struct {
			name   string
			active int
		}{{"all", 0}, {"active-0", 0}, {"active-100", 100}, {"active-1000", 1000}} {
			b.Run(fmt.Sprintf("flows-%d/%s", n, c.name), func(b *testing.B) {
				rv := newRevoker(d.cache.Engine().Config().Revocation)
				var prev ebpf.Snapshot
				look := func() {
					if c.name == "all" {
						d.revokeTickAll(rv, &prev, time.Now())
					} else {
						d.revokeTick(rv, time.Now())
					}
				}
				look()
				frames := make([][]byte, c.active)
				for i := range frames {
					frames[i] = frame(uint32(0x1001+i*(n/max(c.active, 1))), false)
				}
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					for _, f := range frames {
						xdpRun(b, d, f)
					}
					b.StartTimer()
					look()
				}
			})
		}
	}
}

// revokeTickAll is revokeTick as it was before ebpf.ActiveFlows, kept for
// BenchmarkRevokeTick's comparison: it reads every null verdict and the
// counters of every slot (ebpf.NullFlows), groups them by flow in a map
// built anew, and looks every flow up in the cache.
func (d *Daemon) revokeTickAll(rv *revoker, prev *ebpf.Snapshot, now time.Time) []flowcache.Key {
	snap, err := d.prog.NullFlows()
	if err != nil {
		return nil
	}
	first := !rv.started
	rv.started = true
	rv.tick++
	type carrier struct {
		keys  []ebpf.FlowKey
		delta revCount
	}
	byFlow := make(map[flowcache.Key]*carrier)
	for k, st := range snap {
		fk := flowcache.NewKey(k.SrcAddr(), k.DstAddr(), k.Spi)
		c := byFlow[fk]
		if c == nil {
			c = &carrier{}
			byFlow[fk] = c
		}
		c.keys = append(c.keys, k)
		old, ok := (*prev)[k]
		switch {
		case first:
		case ok && st.Packets >= old.Packets && st.Unparsed >= old.Unparsed:
			c.delta.total += st.Packets - old.Packets
			c.delta.bad += st.Unparsed - old.Unparsed
		default:
			c.delta.total += st.Packets
			c.delta.bad += st.Unparsed
		}
	}
	*prev = snap
	var revoked []flowcache.Key
	for fk, c := range byFlow {
		f, ok := d.cache.Lookup(fk)
		if !ok || f.Verdict.Class != heuristics.Null || f.Verdict.Source == heuristics.SourceKnown {
			continue
		}
		if garbage, _, _ := rv.judge(fk, c.delta); garbage && d.cache.Revoke(fk, heuristics.Garbage, now.UnixNano()) {
			d.deleteVerdicts(c.keys)
			delete(rv.flows, fk)
			revoked = append(revoked, fk)
		}
	}
	rv.forget()
	return revoked
}
