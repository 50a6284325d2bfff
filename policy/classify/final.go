package classify

import "github.com/espy-dpi/espy/policy"

// An item is final when no item of another table with a better (lower)
// priority overlaps it. An ordered lookup whose hit is a final item stops
// there: a better item containing the packet would overlap the hit, and it
// cannot be in the hit's own table, whose items containing the packet all
// share the hit's bucket, which is sorted by priority. Without the flag the
// lookup probes on until no table can beat the hit; on the ClassBench
// traces those probes almost never change the answer (acl1_10K: 0.32
// probes a lookup, 1.2% of lookups improved; ipc1_10K: 0.50 and 0.6%).
//
// The flag may be false when it could be true (a deleted item leaves its
// overlaps marked), never the reverse.

// span is an item's box in the form overlap tests read, with its place.
type span struct {
	lo, hi   [5]uint32 // family, protocol, source port, destination port, label
	src, dst [2]policy.U128
	prio     uint32
	tb       int32 // index in Classifier.tables
	pos      int32 // index in the table's items
}

func spanOf(x *item, tb, pos int) span {
	return span{
		lo: [5]uint32{uint32(x.fam), uint32(x.proto), uint32(x.sport), uint32(x.dport), x.label},
		hi: [5]uint32{uint32(x.fam) + uint32(x.famW), uint32(x.proto) + uint32(x.protoW),
			uint32(x.sport) + uint32(x.sportW), uint32(x.dport) + uint32(x.dportW), x.label + x.labelW},
		src:  [2]policy.U128{x.src, add128(x.src, x.srcW)},
		dst:  [2]policy.U128{x.dst, add128(x.dst, x.dstW)},
		prio: x.prio, tb: int32(tb), pos: int32(pos),
	}
}

func add128(a, b policy.U128) policy.U128 {
	lo := a.Lo + b.Lo
	hi := a.Hi + b.Hi
	if lo < a.Lo {
		hi++
	}
	return policy.U128{Hi: hi, Lo: lo}
}

// overlaps reports whether a and b share a packet. Ports and protocol go
// first: on ClassBench they tell rules apart most cheaply.
func (a *span) overlaps(b *span) bool {
	for d := 3; d >= 0; d-- {
		if a.lo[d] > b.hi[d] || b.lo[d] > a.hi[d] {
			return false
		}
	}
	return a.lo[4] <= b.hi[4] && b.lo[4] <= a.hi[4] &&
		!a.dst[1].Less(b.dst[0]) && !b.dst[1].Less(a.dst[0]) &&
		!a.src[1].Less(b.src[0]) && !b.src[1].Less(a.src[0])
}

// setFinal computes every live item's final flag from scratch
// (policy.Finals); on the ClassBench 10k sets it takes 10-40 ms, once per
// Build.
func (c *Classifier) setFinal() {
	all := make([]span, 0, c.Len())
	for ti, tb := range c.tables {
		tb.eachLivePos(func(pos int) { all = append(all, spanOf(&tb.items[pos], ti, pos)) })
	}
	items := make([]policy.FinalItem, len(all))
	for i := range all {
		x := &all[i]
		items[i] = policy.FinalItem{Prio: x.prio, Table: int(x.tb),
			Src: policy.Interval{Lo: x.src[0], Hi: x.src[1]}, Dst: policy.Interval{Lo: x.dst[0], Hi: x.dst[1]}}
	}
	final := policy.Finals(items, func(i, j int) bool { return all[i].overlaps(&all[j]) })
	for i := range all {
		c.tables[all[i].tb].setFinal(int(all[i].pos), final[i])
	}
}

// insertFinal returns the final flag of x, about to join table into, and
// clears the flag of every item of another table that x overlaps with a
// better priority. It costs a pass over the items, as an update should,
// against a rebuild's pass over all pairs.
func (c *Classifier) insertFinal(x *item, into *table) bool {
	sx := spanOf(x, 0, 0)
	final := true
	for _, tb := range c.tables {
		if tb == into {
			continue
		}
		tb.eachLivePos(func(pos int) {
			y := &tb.items[pos]
			if y.prio == x.prio {
				return
			}
			sy := spanOf(y, 0, 0)
			if !sy.overlaps(&sx) {
				return
			}
			if y.prio < x.prio {
				final = false
			} else {
				tb.setFinal(pos, false)
			}
		})
	}
	return final
}

// setFinal sets the final flag of the item at pos, in both of its forms.
func (tb *table) setFinal(pos int, final bool) {
	tb.items[pos].final = final
	if tb.packed {
		tb.small[pos].final = final
	}
}

// eachLivePos calls fn with the position of every live item.
func (tb *table) eachLivePos(fn func(pos int)) {
	for _, e := range tb.index {
		if e == 0 {
			continue
		}
		start, n := cellBucket(e)
		for i := start; i < start+n; i++ {
			fn(i)
		}
	}
}
