package ebpf

import (
	"fmt"
	"testing"
)

// TestVerdictWalks checks the batch walks of the verdict map over several
// batches (verdictIterBatch): Verdicts yields every verdict exactly once
// with its value, IdleFlows records every flow and later reports exactly
// those without packets, and an empty map ends at once without error.
func TestVerdictWalks(t *testing.T) {
	const n = 2*verdictIterBatch + 300
	p := loadTest(t, Config{VerdictEntries: 2 * n, PendingEntries: 256, InnerRuleEntries: 8})

	it := p.Verdicts()
	if it.Next() || it.Err() != nil || it.Key() != (FlowKey{}) || it.Verdict() != (Verdict{}) {
		t.Fatalf("empty map: a verdict %v %v, or %v", it.Key(), it.Verdict(), it.Err())
	}

	want := map[FlowKey]Verdict{}
	var vb VerdictBatch
	for i := range n {
		k := key4(t, uint32(0x20000+i), EncapNone, 0, 0)
		v := Verdict{Kind: VerdictNull, IcvLen: uint8(i % 32), IvLen: uint8(i % 17), Generation: uint32(i)}
		want[k] = v
		vb.Add(k, v)
		if vb.Len() == 256 || i == n-1 {
			if err := p.SetVerdicts(&vb); err != nil {
				t.Fatal(err)
			}
		}
	}

	seen := map[FlowKey]bool{}
	for it := p.Verdicts(); it.Next(); {
		k, v := it.Key(), it.Verdict()
		w, ok := want[k]
		v.Slot = 0 // handed out by SetVerdicts
		if !ok || seen[k] || v != w {
			t.Fatalf("verdict %v %+v: known %v, seen before %v, want %+v", k, v, ok, seen[k], w)
		}
		seen[k] = true
	}
	if len(seen) != n {
		t.Fatalf("walked %d verdicts, want %d", len(seen), n)
	}

	idle, snap, err := p.IdleFlows(nil)
	if err != nil || len(idle) != 0 || len(snap) != n {
		t.Fatalf("first sweep: %d idle, %d in the snapshot, %v", len(idle), len(snap), err)
	}
	// Flow 204 has ICV 12 and no IV, as nullTunnel4 builds.
	busy := key4(t, 0x20000+204, EncapNone, 0, 0)
	if _, _, d := run(t, p, nullTunnel4(busy.Spi, 1000, 53)); onlyReason(t, d) != ExitNullAllow {
		t.Fatalf("busy flow's packet: %v", d)
	}
	idle, snap, err = p.IdleFlows(snap)
	if err != nil || len(idle) != n-1 || len(snap) != n || snap[busy].Packets != 1 {
		t.Fatalf("second sweep: %d idle, %d in the snapshot (busy flow %+v), %v", len(idle), len(snap), snap[busy], err)
	}
	for _, k := range idle {
		if k == busy {
			t.Fatalf("the busy flow %v reported idle", k)
		}
	}
}

// keywiseIdleFlows is IdleFlows as it was before its verdict walk was
// batched: one BPF_MAP_GET_NEXT_KEY and one lookup per verdict. It is kept
// for BenchmarkVerdictWalk, which measures both in one run.
func keywiseIdleFlows(p *Program, prev Snapshot) ([]FlowKey, Snapshot, error) {
	stats, err := p.allSlotStats()
	if err != nil {
		return nil, nil, err
	}
	var idle []FlowKey
	next := make(Snapshot, len(prev))
	var k FlowKey
	var v Verdict
	it := p.objs.Verdicts.Iterate()
	for it.Next(&k, &v) {
		var s FlowStats
		if int(v.Slot) < len(stats) {
			s = stats[v.Slot]
		}
		next[k] = s
		if old, ok := prev[k]; ok && old.Packets == s.Packets {
			idle = append(idle, k)
		}
	}
	return idle, next, it.Err()
}

// BenchmarkVerdictWalk measures the walks of the verdict map at 100,000
// flows: IdleFlows and Verdicts with batch lookups against the key-by-key
// walk they replaced (cilium/ebpf's MapIterator), in the same run.
func BenchmarkVerdictWalk(b *testing.B) {
	requireBPF(b)
	const n = 100_000
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
	_, prev, err := p.IdleFlows(nil)
	if err != nil {
		b.Fatal(err)
	}
	idle := func(name string, f func(*Program, Snapshot) ([]FlowKey, Snapshot, error)) {
		b.Run(fmt.Sprintf("IdleFlows/%s/flows-%d", name, n), func(b *testing.B) {
			for b.Loop() {
				idle, snap, err := f(p, prev)
				if err != nil || len(idle) != n || len(snap) != n {
					b.Fatalf("%d idle, %d in the snapshot, %v", len(idle), len(snap), err)
				}
			}
		})
	}
	walk := func(name string, f func() (int, error)) {
		b.Run(fmt.Sprintf("Verdicts/%s/flows-%d", name, n), func(b *testing.B) {
			for b.Loop() {
				if got, err := f(); err != nil || got != n {
					b.Fatalf("walked %d, %v", got, err)
				}
			}
		})
	}
	// Interleaved, so both see the same load on a shared machine.
	for range 2 {
		idle("keywise", keywiseIdleFlows)
		idle("batch", (*Program).IdleFlows)
		walk("keywise", func() (int, error) {
			var k FlowKey
			var v Verdict
			c := 0
			it := p.objs.Verdicts.Iterate()
			for it.Next(&k, &v) {
				c++
			}
			return c, it.Err()
		})
		walk("batch", func() (int, error) {
			c := 0
			it := p.Verdicts()
			for it.Next() {
				c++
			}
			return c, it.Err()
		})
	}
}
