package classify

import (
	"slices"

	"github.com/espy-dpi/espy/policy"
)

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

// addrGroup returns the group of an address range: the range's shared 44
// leading bits (the leading 12 of an IPv4 address, as in the prefilter),
// or ok false when the range spans more than one group. Ranges in
// different groups are disjoint.
func addrGroup(r *[2]policy.U128) (g policy.U128, ok bool) {
	lo, hi := r[0], r[1]
	if lo.Hi != hi.Hi || lo.Lo>>(32-addrBits) != hi.Lo>>(32-addrBits) {
		return policy.U128{}, false
	}
	return policy.U128{Hi: lo.Hi, Lo: lo.Lo >> (32 - addrBits)}, true
}

// setFinal computes every live item's final flag from scratch. Items are
// grouped by source and by destination range so that each is compared only
// with the items it may overlap: an item whose source range lies in one
// group meets only that group's items and those of wide source ranges
// (likewise for the destination; both narrow, the four lists that can
// hold an overlap). Each list is in priority order and is read up to the
// item's own priority, and the first overlapping item of another table
// settles the flag. On the ClassBench 10k sets it takes 10-40 ms, once
// per Build.
func (c *Classifier) setFinal() {
	all := make([]span, 0, c.Len())
	for ti, tb := range c.tables {
		tb.eachLivePos(func(pos int) { all = append(all, spanOf(&tb.items[pos], ti, pos)) })
	}
	slices.SortFunc(all, func(a, b span) int { return cmpU32(a.prio, b.prio) })
	type pair struct{ s, d policy.U128 }
	var (
		both             = map[pair][]int32{}
		srcOnly, dstOnly = map[policy.U128][]int32{}, map[policy.U128][]int32{}
		bySrc, byDst     = map[policy.U128][]int32{}, map[policy.U128][]int32{}
		wideSrc, wideDst []int32 // the items whose range spans groups
		neither          []int32 // both ranges span groups
	)
	for i := range all {
		j := int32(i)
		gs, sok := addrGroup(&all[i].src)
		gd, dok := addrGroup(&all[i].dst)
		switch {
		case sok && dok:
			both[pair{gs, gd}] = append(both[pair{gs, gd}], j)
		case sok:
			srcOnly[gs] = append(srcOnly[gs], j)
		case dok:
			dstOnly[gd] = append(dstOnly[gd], j)
		default:
			neither = append(neither, j)
		}
		if sok {
			bySrc[gs] = append(bySrc[gs], j)
		} else {
			wideSrc = append(wideSrc, j)
		}
		if dok {
			byDst[gd] = append(byDst[gd], j)
		} else {
			wideDst = append(wideDst, j)
		}
	}
	// better reports whether an item of list, in priority order, overlaps
	// all[i] from another table with a better priority.
	better := func(i int, list []int32) bool {
		x := &all[i]
		for _, j := range list {
			y := &all[j]
			if y.prio >= x.prio {
				return false
			}
			if y.tb != x.tb && y.overlaps(x) {
				return true
			}
		}
		return false
	}
	for i := range all {
		x := &all[i]
		gs, sok := addrGroup(&x.src)
		gd, dok := addrGroup(&x.dst)
		var beaten bool
		switch {
		case sok && dok:
			beaten = better(i, both[pair{gs, gd}]) || better(i, srcOnly[gs]) ||
				better(i, dstOnly[gd]) || better(i, neither)
		case sok:
			beaten = better(i, bySrc[gs]) || better(i, wideSrc)
		case dok:
			beaten = better(i, byDst[gd]) || better(i, wideDst)
		default:
			for j := 0; j < i && !beaten; j++ {
				y := &all[j]
				beaten = y.prio < x.prio && y.tb != x.tb && y.overlaps(x)
			}
		}
		c.tables[x.tb].setFinal(int(x.pos), !beaten)
	}
}

func cmpU32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
