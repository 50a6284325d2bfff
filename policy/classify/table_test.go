package classify

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/policytest"
)

// v4Box returns an IPv4 box over the given address, port and protocol
// ranges, with any label.
func v4Box(src, dst policy.Interval, sport, dport, proto policy.Interval) policy.Box {
	b := policy.FullBox()
	b[policy.DimFamily] = policy.Span(4, 4)
	b[policy.DimSrc], b[policy.DimDst] = src, dst
	b[policy.DimSPort], b[policy.DimDPort], b[policy.DimProto] = sport, dport, proto
	return b
}

func TestCompactItem(t *testing.T) {
	anyPort, anyProto := policy.Span(0, 65535), policy.Span(0, 255)
	v4All := policy.Span(0, math.MaxUint32)
	net := policy.Span(0xc0000200, 0xc00002ff) // 192.0.2.0/24
	v6 := policy.FullBox()
	v6[policy.DimFamily] = policy.Span(6, 6)
	labelled := v4Box(net, net, anyPort, anyPort, anyProto)
	labelled[policy.DimLabel] = policy.Span(1, 1)
	bothFamilies := policy.FullBox()
	tooWide := v4Box(policy.Span(0, 1<<32), net, anyPort, anyPort, anyProto)
	for _, tc := range []struct {
		name string
		box  policy.Box
		ok   bool
	}{
		{"v4 prefixes", v4Box(net, net, anyPort, policy.Span(443, 443), policy.Span(6, 6)), true},
		{"v4 any address", v4Box(v4All, v4All, anyPort, anyPort, anyProto), true},
		{"v4 top address", v4Box(policy.Span(math.MaxUint32, math.MaxUint32), net, anyPort, anyPort, anyProto), true},
		{"v6", v6, false},
		{"labelled", labelled, false},
		{"both families", bothFamilies, false},
		{"address past 32 bits", tooWide, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newItem(&Item{Box: tc.box, Priority: 3, Value: 9})
			cx, ok := compactItem(&x)
			if ok != tc.ok {
				t.Fatalf("compactItem ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if cx.prio != 3 {
				t.Errorf("prio %d, want 3", cx.prio)
			}
			// Every corner and its neighbours: both forms agree with the
			// box itself.
			b := &tc.box
			for _, p := range cornerPackets(b) {
				want := b.Contains(&p)
				if got := x.contains(&p); got != want {
					t.Errorf("%v: item.contains %v, box %v", p, got, want)
				}
				if !isV4(&p) {
					continue
				}
				if got := cx.contains(&p); got != want {
					t.Errorf("%v: citem.contains %v, box %v", p, got, want)
				}
			}
		})
	}
}

// cornerPackets returns packets at and just outside every bound of b.
func cornerPackets(b *policy.Box) []policy.Packet {
	near := func(iv policy.Interval, max uint64) []uint64 {
		vs := []uint64{iv.Lo.Lo, iv.Hi.Lo}
		if iv.Lo.Lo > 0 {
			vs = append(vs, iv.Lo.Lo-1)
		}
		if iv.Hi.Lo < max {
			vs = append(vs, iv.Hi.Lo+1)
		}
		return vs
	}
	var out []policy.Packet
	for _, s := range near(b[policy.DimSrc], math.MaxUint32) {
		for _, d := range near(b[policy.DimDst], math.MaxUint32) {
			for _, sp := range near(b[policy.DimSPort], 65535) {
				for _, dp := range near(b[policy.DimDPort], 65535) {
					for _, pr := range near(b[policy.DimProto], 255) {
						out = append(out, policy.Packet{Family: 4, Src: policy.U64(s), Dst: policy.U64(d),
							SPort: uint16(sp), DPort: uint16(dp), Proto: uint8(pr)})
					}
				}
			}
		}
	}
	return out
}

// TestTagCollision puts two buckets with the same 32-bit tag on one probe
// chain: a lookup whose first tag match holds no item containing the
// packet must go on to the bucket that does.
func TestTagCollision(t *testing.T) {
	anyPort, anyProto := policy.Span(0, 65535), policy.Span(0, 255)
	net := policy.Span(0xc0000200, 0xc00002ff)
	other := policy.Span(0xc6336400, 0xc63364ff) // 198.51.100.0/24
	p := policy.Packet{Family: 4, Src: policy.U64(0xc0000201), Dst: policy.U64(0xc0000202), Proto: 6}
	for _, packed := range []bool{true, false} {
		t.Run(fmt.Sprintf("packed=%v", packed), func(t *testing.T) {
			tb := newTable(tuple{})
			miss := v4Box(other, other, anyPort, anyPort, anyProto)
			hit := v4Box(net, net, anyPort, anyPort, anyProto)
			if !packed {
				hit[policy.DimLabel] = policy.Span(0, 0) // no compact form
			}
			// Same home cell (top bits) and tag (low 32 bits), other hash.
			const h1, h2 = 0x1234_5678_9abc_def0, 0x1234_5679_9abc_def0
			if err := tb.insert(newItem(&Item{Box: miss, Priority: 1, Value: 1}), 1, h1); err != nil {
				t.Fatal(err)
			}
			if err := tb.insert(newItem(&Item{Box: hit, Priority: 2, Value: 2}), 2, h2); err != nil {
				t.Fatal(err)
			}
			if tb.packed != packed {
				t.Fatalf("packed %v, want %v", tb.packed, packed)
			}
			if j := tb.lookup(&p, h2, ^uint32(0)); j < 0 || tb.vals[j] != 2 {
				t.Errorf("wide lookup: position %d, want the item of value 2", j)
			}
			// The chain is the same from either bucket's home.
			if j := tb.lookup(&p, h1, ^uint32(0)); j < 0 || tb.vals[j] != 2 {
				t.Errorf("lookup from the other bucket's hash: position %d, want value 2", j)
			}
		})
	}
}

// TestManyTables builds a classifier with more tables than the prefilter
// tracks, so that lookups also take the unfiltered path, and checks it
// against a linear scan of the items, built in bulk and one by one.
func TestManyTables(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	anyPort, anyProto := policy.Span(0, 65535), policy.Span(0, 255)
	var items []Item
	// Every combination of prefix lengths (multiples of 8, so each is its
	// own relaxed tuple), exact or any protocol and destination port,
	// finest first so that no table can take a coarser item: 100 tuples.
	// Priorities follow, so the coarse tables, which most packets hit,
	// sort past the prefilter's reach.
	for _, sl := range []int{32, 24, 16, 8, 0} {
		for _, dl := range []int{32, 24, 16, 8, 0} {
			for _, exactProto := range []bool{true, false} {
				for _, exactPort := range []bool{true, false} {
					for k := 0; k < 4; k++ {
						s := (0xc000_0200 | rng.Uint32()&0xff) &^ uint32(1<<(32-sl)-1)
						d := (0xc633_6400 | rng.Uint32()&0xff) &^ uint32(1<<(32-dl)-1)
						if sl == 0 {
							s = 0
						}
						if dl == 0 {
							d = 0
						}
						proto, dport := anyProto, anyPort
						if exactProto {
							proto = policy.Span(6, 6)
						}
						if exactPort {
							dport = policy.Span(443, 443)
						}
						b := v4Box(policy.Span(uint64(s), uint64(s)|(1<<(32-sl)-1)), policy.Span(uint64(d), uint64(d)|(1<<(32-dl)-1)),
							anyPort, dport, proto)
						n := len(items)
						items = append(items, Item{ID: uint64(n + 1), Box: b, Priority: uint32(n), Value: int32(n)})
					}
				}
			}
		}
	}
	for _, bulk := range []bool{true, false} {
		c := New(false)
		c.bulk = bulk
		for _, it := range items {
			if err := c.Insert(it); err != nil {
				t.Fatal(err)
			}
		}
		if bulk {
			c.finish()
		}
		if c.Tables() <= filterTables {
			t.Fatalf("%d tables, want more than %d", c.Tables(), filterTables)
		}
		for n := 0; n < 20000; n++ {
			p := policy.Packet{Family: 4, Src: policy.U64(uint64(0xc000_0200 | rng.Uint32()&0xff)),
				Dst: policy.U64(uint64(0xc633_6400 | rng.Uint32()&0xff)), Proto: uint8(5 + rng.IntN(3)), DPort: uint16(442 + rng.IntN(3))}
			if n%4 == 0 {
				p.Src = policy.U64(uint64(rng.Uint32()))
			}
			want, wok := int32(0), false
			best := ^uint32(0)
			for i := range items {
				if items[i].Box.Contains(&p) && (items[i].Priority < best || (items[i].Priority == best && !wok)) {
					// Equal priorities: any of them is a right answer.
					want, wok, best = items[i].Value, true, items[i].Priority
				}
			}
			got, ok := c.Lookup(&p)
			if ok != wok || (ok && items[got].Priority != best) {
				t.Fatalf("bulk=%v %v: got %d (%v), want %d (%v) at priority %d", bulk, p, got, ok, want, wok, best)
			}
		}
	}
}

// TestPrefilterConservative checks that the prefilter never rules out a
// table holding an item that contains the packet, after a bulk build and
// after incremental inserts and deletes.
func TestPrefilterConservative(t *testing.T) {
	for seed := uint64(1); seed <= 10; seed++ {
		rng := rand.New(rand.NewPCG(seed, 3))
		rules := policytest.Rules(rng, 60, true)
		s, err := Build(rules, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		check := func(stage string) {
			c := s.c
			for _, p := range policytest.Packets(rng, rules, 500) {
				cand := c.f.candidates(&p)
				for i, tb := range c.tables[:min(len(c.tables), filterTables)] {
					found := false
					tb.eachLive(func(x *item) { found = found || x.contains(&p) })
					if found && cand&(1<<i) == 0 {
						t.Fatalf("seed %d, %s: %v: table %d holds a match but is filtered out", seed, stage, p, i)
					}
				}
			}
		}
		check("build")
		for _, i := range rng.Perm(len(rules))[:10] {
			if _, err := s.Remove(rules[i].Name); err != nil {
				t.Fatal(err)
			}
		}
		extra := policytest.Rules(rng, 10, true)
		for i, r := range extra {
			r.Name, r.Precedence = fmt.Sprintf("extra%d", i), 10*len(rules)+i+1
			if _, err := s.Insert(r); err != nil {
				t.Fatal(err)
			}
		}
		check("updates")
	}
}
