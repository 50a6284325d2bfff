package ebpf

import (
	"fmt"
	"slices"
	"testing"
)

// TestSetVerdicts writes a batch of new flows (sampled before, a reused
// slot with stale counters to zero) next to a flow decided earlier,
// whose slot and counters must not be touched, with as many slots as needed
// and no more.
func TestSetVerdicts(t *testing.T) {
	requireBPF(t)
	p := loadTest(t, Config{VerdictEntries: 64, PendingEntries: 64, InnerRuleEntries: 8, FlowSlots: 17, NoRateLimit: true})
	sampleReader(t, p) // so that samples are written and pending counts kept
	const n = 16
	frame := func(spi uint32) []byte { return nullTunnel4(spi, 1, 2) }
	// A flow with counters, deleted: its slot is free but dirty.
	// Seventeen slots: the earlier flow's and sixteen new ones.
	gone := key4(t, 0x6ff, EncapNone, 0, 0)
	mustVerdict(t, p, gone, nullV)
	run(t, p, frame(0x6ff))
	run(t, p, frame(0x6ff))
	if err := p.DeleteVerdict(gone); err != nil {
		t.Fatal(err)
	}
	// A flow decided earlier, with three packets counted.
	old := key4(t, 0x605, EncapNone, 0, 0)
	mustVerdict(t, p, old, encV)
	for range 3 {
		run(t, p, frame(0x605))
	}
	var b VerdictBatch
	for i := range n {
		k := key4(t, uint32(0x610+i), EncapNone, 0, 0)
		if _, _, d := run(t, p, frame(k.Spi)); d[ExitPendingSampled] != 1 {
			t.Fatalf("flow %v not sampled: %v", k, d)
		}
		b.Add(k, nullV)
	}
	if err := p.SetVerdicts(&b); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 0 {
		t.Errorf("batch not emptied: %d", b.Len())
	}
	slots := map[uint32]bool{}
	for i := range n + 1 {
		k := key4(t, uint32(0x610+i), EncapNone, 0, 0)
		if i == n {
			k = old
		}
		v, err := p.Verdict(k)
		if err != nil || v.Kind != VerdictNull && k != old {
			t.Fatalf("%v: verdict %+v, %v", k, v, err)
		}
		if v.Slot == 0 || slots[v.Slot] {
			t.Fatalf("%v: slot %d (taken: %v)", k, v.Slot, slots)
		}
		slots[v.Slot] = true
		st, err := p.FlowCounters(k)
		if err != nil {
			t.Fatal(err)
		}
		want := FlowStats{}
		if k == old {
			want = FlowStats{Packets: 3, Bytes: 3 * uint64(len(frame(0x605)))}
		}
		if st != want {
			t.Errorf("%v: counters %+v, want %+v", k, st, want)
		}
	}
	// All 17 slots are taken now: one more verdict fails, and nothing of
	// the batch is written.
	b.Add(key4(t, 0x700, EncapNone, 0, 0), nullV)
	if err := p.SetVerdicts(&b); err == nil {
		t.Error("a verdict beyond the slots was accepted")
	}
	if _, err := p.Verdict(key4(t, 0x700, EncapNone, 0, 0)); err == nil {
		t.Error("the failed batch was written")
	}
	// Invalid verdicts are refused before any write.
	b.Add(key4(t, 0x701, EncapNone, 0, 0), Verdict{Kind: 9})
	if err := p.SetVerdicts(&b); err == nil {
		t.Error("verdict kind 9 accepted")
	}
}

// TestSeenFlows: the flows with packets since the last call, each once.
func TestSeenFlows(t *testing.T) {
	requireBPF(t)
	p := loadTest(t, smallMaps(Config{}))
	a, b := key4(t, 0x800, EncapNone, 0, 0), key4(t, 0x8c1, EncapNone, 0, 0)
	mustVerdict(t, p, a, nullV)
	mustVerdict(t, p, b, encV)
	seen := func() []FlowKey {
		t.Helper()
		got, err := p.SeenFlows(nil)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(x, y FlowKey) int { return int(x.Spi) - int(y.Spi) })
		return got
	}
	if got := seen(); len(got) != 0 {
		t.Fatalf("before any packet: %v", got)
	}
	run(t, p, nullTunnel4(0x800, 1, 2))
	if got := seen(); !slices.Equal(got, []FlowKey{a}) {
		t.Fatalf("after a packet of a: %v", got)
	}
	if got := seen(); len(got) != 0 {
		t.Fatalf("second look: %v", got)
	}
	enc := cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espEncrypted(0x8c1, 1, 100), ip4opts{}))
	run(t, p, enc)
	run(t, p, enc)
	run(t, p, nullTunnel4(0x800, 1, 2))
	if got := seen(); !slices.Equal(got, []FlowKey{a, b}) {
		t.Fatalf("after packets of both: %v", got)
	}
	// A flow whose verdict was deleted is not reported.
	run(t, p, enc)
	if err := p.DeleteVerdict(b); err != nil {
		t.Fatal(err)
	}
	if got := seen(); len(got) != 0 {
		t.Fatalf("deleted flow reported: %v", got)
	}
}

// BenchmarkSetVerdicts compares writing new flows' verdicts one by one
// (SetVerdict: four map syscalls each) with SetVerdicts in batches of 256;
// ns/verdict is the figure to compare. Each verdict is for a new flow, so
// keep b.N under a few hundred thousand verdicts (-benchtime 100000x).
func BenchmarkSetVerdicts(b *testing.B) {
	requireBPF(b)
	for _, batch := range []int{1, 256} {
		b.Run(fmt.Sprintf("batch-%d", batch), func(b *testing.B) {
			p := loadTest(b, Config{VerdictEntries: 1 << 20, PendingEntries: 1024, InnerRuleEntries: 8})
			var vb VerdictBatch
			spi := uint32(1)
			b.ReportAllocs()
			for b.Loop() {
				k := key4(b, spi, EncapNone, 0, 0)
				spi++
				if batch == 1 {
					if err := p.SetVerdict(k, nullV); err != nil {
						b.Fatal(err)
					}
					continue
				}
				vb.Add(k, nullV)
				if vb.Len() == batch {
					if err := p.SetVerdicts(&vb); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := p.SetVerdicts(&vb); err != nil {
				b.Fatal(err)
			}
		})
	}
}
