package policy

import (
	"cmp"
	"slices"
)

// FinalItem is one entry of a tuple-space classifier, as Finals sees it.
type FinalItem struct {
	Prio     uint32 // lower is better
	Table    int
	Src, Dst Interval
}

// finalGroupShift keeps an address's leading 44 bits of the low word (the
// leading 12 of an IPv4 address) as its group.
const finalGroupShift = 20

// finalGroup returns the group of an address range, or ok false when the
// range spans more than one group. The group is monotone in the address,
// so ranges in different groups are disjoint.
func finalGroup(iv *Interval) (g U128, ok bool) {
	lo, hi := iv.Lo, iv.Hi
	if lo.Hi != hi.Hi || lo.Lo>>finalGroupShift != hi.Lo>>finalGroupShift {
		return U128{}, false
	}
	return U128{Hi: lo.Hi, Lo: lo.Lo >> finalGroupShift}, true
}

// Finals reports for each item whether it is final: no item of another
// table with a better priority overlaps it (overlaps(i, j) says whether
// items i and j share a packet), so that an ordered lookup that hits it
// can stop there. Items are grouped by source and destination address so
// that each is compared only with the items it may overlap: an item whose
// source range lies in one group meets only that group's items and those
// of wide source ranges (likewise for the destination; both narrow, the
// four lists that can hold an overlap). Each list is in priority order and
// is read up to the item's own priority, and the first overlapping item
// of another table settles it. On the ClassBench 10k sets this takes
// milliseconds, not the seconds of all pairs.
func Finals(items []FinalItem, overlaps func(i, j int) bool) []bool {
	order := make([]int32, len(items))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(items[a].Prio, items[b].Prio) })
	type pair struct{ s, d U128 }
	var (
		both             = map[pair][]int32{}
		srcOnly, dstOnly = map[U128][]int32{}, map[U128][]int32{}
		bySrc, byDst     = map[U128][]int32{}, map[U128][]int32{}
		wideSrc, wideDst []int32 // items whose address spans groups
		neither          []int32 // both addresses span groups
	)
	for _, j := range order {
		gs, sok := finalGroup(&items[j].Src)
		gd, dok := finalGroup(&items[j].Dst)
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
	// beaten reports whether an item of list beats item i: a better
	// priority, another table, a shared packet.
	beaten := func(i int32, list []int32) bool {
		x := &items[i]
		for _, j := range list {
			y := &items[j]
			if y.Prio >= x.Prio {
				return false
			}
			if y.Table != x.Table && overlaps(int(j), int(i)) {
				return true
			}
		}
		return false
	}
	final := make([]bool, len(items))
	for _, i := range order {
		gs, sok := finalGroup(&items[i].Src)
		gd, dok := finalGroup(&items[i].Dst)
		var b bool
		switch {
		case sok && dok:
			b = beaten(i, both[pair{gs, gd}]) || beaten(i, srcOnly[gs]) ||
				beaten(i, dstOnly[gd]) || beaten(i, neither)
		case sok:
			b = beaten(i, bySrc[gs]) || beaten(i, wideSrc)
		case dok:
			b = beaten(i, byDst[gd]) || beaten(i, wideDst)
		default:
			b = beaten(i, order)
		}
		final[i] = !b
	}
	return final
}
