package bpf

import "github.com/espy-dpi/espy/policy"

// setFinal sets Range.Final of an ordered set: a range is final when no
// range of another table with a better priority overlaps it (policy.h says
// why a hit on it then ends the lookup). tableOf[i] is the table of range
// i.
func setFinal(boxes []policy.Box, rs []Range, tableOf []int) {
	items := make([]policy.FinalItem, len(rs))
	for i := range rs {
		items[i] = policy.FinalItem{Prio: rs[i].Prio, Table: tableOf[i], Src: boxes[i][policy.DimSrc], Dst: boxes[i][policy.DimDst]}
	}
	final := policy.Finals(items, func(i, j int) bool { return boxes[i].Overlaps(&boxes[j]) })
	for i := range rs {
		rs[i].Final = final[i]
	}
}
