package bpf

import (
	"cmp"
	"slices"

	"github.com/espy-dpi/espy/policy"
)

// groupShift keeps an address's leading 44 bits of the low word (the
// leading 12 of an IPv4 address) as its group, as policy/classify does.
const groupShift = 20

// addrGroup returns the group of an address range, or ok false when the
// range spans more than one group. The group is monotone in the address,
// so ranges in different groups are disjoint.
func addrGroup(iv *policy.Interval) (g policy.U128, ok bool) {
	lo, hi := iv.Lo, iv.Hi
	if lo.Hi != hi.Hi || lo.Lo>>groupShift != hi.Lo>>groupShift {
		return policy.U128{}, false
	}
	return policy.U128{Hi: lo.Hi, Lo: lo.Lo >> groupShift}, true
}

// setFinal sets Range.Final of an ordered set: a range is final when no
// range of another table with a better priority overlaps it (policy.h says
// why a hit on it then ends the lookup). tableOf[i] is the table of range
// i. Ranges are grouped by source and destination address so that each is
// compared only with the ranges it may overlap; lists are in priority
// order and read up to the range's own priority. For ClassBench 10k sets
// this takes milliseconds, not the seconds of all pairs.
func setFinal(boxes []policy.Box, rs []Range, tableOf []int) {
	order := make([]int32, len(rs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(rs[a].Prio, rs[b].Prio) })
	type pair struct{ s, d policy.U128 }
	var (
		both             = map[pair][]int32{}
		srcOnly, dstOnly = map[policy.U128][]int32{}, map[policy.U128][]int32{}
		bySrc, byDst     = map[policy.U128][]int32{}, map[policy.U128][]int32{}
		wideSrc, wideDst []int32 // ranges whose address spans groups
		neither          []int32 // both addresses span groups
	)
	for _, j := range order {
		gs, sok := addrGroup(&boxes[j][policy.DimSrc])
		gd, dok := addrGroup(&boxes[j][policy.DimDst])
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
	// beaten reports whether a range of list beats range i: a better
	// priority, another table, a shared packet.
	beaten := func(i int32, list []int32) bool {
		for _, j := range list {
			if rs[j].Prio >= rs[i].Prio {
				return false
			}
			if tableOf[j] != tableOf[i] && boxes[j].Overlaps(&boxes[i]) {
				return true
			}
		}
		return false
	}
	for _, i := range order {
		gs, sok := addrGroup(&boxes[i][policy.DimSrc])
		gd, dok := addrGroup(&boxes[i][policy.DimDst])
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
		rs[i].Final = !b
	}
}
