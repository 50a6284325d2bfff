package ebpf

import (
	"fmt"
	"slices"
	"testing"
)

// TestActiveFlows: the flows with packets since the call before the last,
// with their counters, kind and slot generation; every flow with a slot
// when asked for all; activity read by SeenFlows meanwhile is not lost,
// nor are the flows ActiveFlows read for the next SeenFlows.
func TestActiveFlows(t *testing.T) {
	pinCPU(t)
	p := loadTest(t, smallMaps(Config{}))
	a, b := key4(t, 0x900, EncapNone, 0, 0), key4(t, 0x9c1, EncapNone, 0, 0)
	mustVerdict(t, p, a, nullV)
	mustVerdict(t, p, b, encV)
	good := nullTunnel4(0x900, 1, 2)
	badPad := slices.Clone(good)
	badPad[len(badPad)-12-2] = 255
	enc := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0x9c1, 1, 100), ip4opts{}))
	type got struct {
		spi  uint32
		kind uint8
		st   FlowStats
	}
	look := func(all bool) ([]got, []FlowActivity) {
		t.Helper()
		act, err := p.ActiveFlows(nil, all)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]got, len(act))
		for i, x := range act {
			out[i] = got{x.Key.Spi, x.Kind, x.FlowStats}
		}
		slices.SortFunc(out, func(x, y got) int { return int(x.spi) - int(y.spi) })
		return out, act
	}
	if g, _ := look(false); len(g) != 0 {
		t.Fatalf("before any packet: %v", g)
	}
	if g, _ := look(true); !slices.Equal(g, []got{{0x900, VerdictNull, FlowStats{}}, {0x9c1, VerdictEncrypted, FlowStats{}}}) {
		t.Fatalf("all: %v", g)
	}
	run(t, p, good)
	run(t, p, badPad)
	wantA := got{0x900, VerdictNull, FlowStats{Packets: 2, Bytes: uint64(2 * len(good)), Unparsed: 1}}
	g, act := look(false)
	if !slices.Equal(g, []got{wantA}) {
		t.Fatalf("after two packets of a: %v", g)
	}
	slot, gen := act[0].Slot, act[0].Gen
	// Reported once more (a count may follow the seen byte), then not.
	if g, _ := look(false); !slices.Equal(g, []got{wantA}) {
		t.Fatalf("second look: %v", g)
	}
	if g, _ := look(false); len(g) != 0 {
		t.Fatalf("third look: %v", g)
	}
	// SeenFlows clears the seen bytes, but not the activity. It reports a
	// too: a's packets were read by ActiveFlows since SeenFlows last ran.
	run(t, p, enc)
	if s, err := p.SeenFlows(nil); err != nil || !slices.Equal(s, []FlowKey{a, b}) {
		t.Fatalf("SeenFlows: %v, %v", s, err)
	}
	if g, _ := look(false); !slices.Equal(g, []got{{0x9c1, VerdictEncrypted, FlowStats{Packets: 1, Bytes: uint64(len(enc))}}}) {
		t.Fatalf("after SeenFlows: %v", g)
	}
	look(false)
	// ActiveFlows clears the seen bytes too, but the next SeenFlows still
	// reports the flow (once): the daemon's refresh must not miss it.
	run(t, p, enc)
	look(false)
	if s, err := p.SeenFlows(nil); err != nil || !slices.Equal(s, []FlowKey{b}) {
		t.Fatalf("SeenFlows after ActiveFlows: %v, %v", s, err)
	}
	if s, err := p.SeenFlows(nil); err != nil || len(s) != 0 {
		t.Fatalf("SeenFlows again: %v, %v", s, err)
	}
	look(false)
	// A verdict written anew gets another slot or a new generation of it.
	if err := p.DeleteVerdict(a); err != nil {
		t.Fatal(err)
	}
	mustVerdict(t, p, a, nullV)
	run(t, p, good)
	_, act = look(false)
	if len(act) != 1 || act[0].Key != a || act[0].Slot == slot && act[0].Gen == gen || act[0].Packets != 1 {
		t.Fatalf("after a new verdict: %+v (slot before %d, generation %d)", act, slot, gen)
	}
	// A deleted flow is not reported.
	run(t, p, enc)
	if err := p.DeleteVerdict(b); err != nil {
		t.Fatal(err)
	}
	if g, _ := look(false); !slices.Equal(g, []got{{0x900, VerdictNull, FlowStats{Packets: 1, Bytes: uint64(len(good))}}}) {
		t.Fatalf("deleted flow reported: %v", g)
	}
}

// TestActiveFlowsAllocs: a look that reads counters does not allocate once
// dst has room.
func TestActiveFlowsAllocs(t *testing.T) {
	requireBPF(t)
	p := loadTest(t, smallMaps(Config{}))
	k := key4(t, 0xa00, EncapNone, 0, 0)
	mustVerdict(t, p, k, nullV)
	dst := make([]FlowActivity, 0, 4)
	n := testing.AllocsPerRun(100, func() {
		var err error
		if dst, err = p.ActiveFlows(dst[:0], true); err != nil || len(dst) != 1 {
			t.Fatalf("%v, %v", dst, err)
		}
	})
	if n != 0 {
		t.Errorf("%.1f allocations per look", n)
	}
}

// BenchmarkRevocationRead compares what the revocation check reads each
// second with n null flows in the fast path: NullFlows (every verdict and
// every slot's counters, the check before ActiveFlows) and ActiveFlows with
// 1% and 10% of the flows active (their seen bytes set before each look, as
// the program sets them). ns/op is one look.
func BenchmarkRevocationRead(b *testing.B) {
	requireBPF(b)
	for _, n := range []int{10_000, 100_000} {
		p := loadTest(b, Config{VerdictEntries: 2 * n, PendingEntries: 1024, InnerRuleEntries: 8})
		var vb VerdictBatch
		for i := range n {
			vb.Add(key4(b, uint32(0x10000+i), EncapNone, 0, 0), nullV)
			if vb.Len() == 256 || i == n-1 {
				if err := p.SetVerdicts(&vb); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(fmt.Sprintf("NullFlows/flows-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				snap, err := p.NullFlows()
				if err != nil || len(snap) != n {
					b.Fatalf("%d flows, %v", len(snap), err)
				}
			}
		})
		for _, pct := range []int{1, 10} {
			b.Run(fmt.Sprintf("ActiveFlows/flows-%d/active-%d%%", n, pct), func(b *testing.B) {
				var dst []FlowActivity
				b.ReportAllocs()
				for b.Loop() {
					// Slots 1..n hold the flows: mark every 100/pct-th.
					for s := 1; s <= n; s += 100 / pct {
						p.seen[s] = 1
					}
					var err error
					if dst, err = p.ActiveFlows(dst[:0], false); err != nil {
						b.Fatal(err)
					}
				}
				// The previous look's activity is reported again.
				if want := n * pct / 100; len(dst) < want {
					b.Fatalf("%d active flows, want at least %d", len(dst), want)
				}
			})
		}
	}
}
