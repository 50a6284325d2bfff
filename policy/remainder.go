package policy

import (
	"fmt"
	"slices"
	"sort"
)

// remainder computes a − ∪cover as disjoint boxes, appending them to dst. It
// gives up once more than limit pieces are pending and reports ok=false.
//
// The cover boxes are first clipped to a, boxes inside another clipped box
// are dropped, and the rest are subtracted largest first: a large subtrahend
// removes most of a while there are still few pieces, which keeps the
// intermediate and final piece counts small (the textbook order explodes on
// firewall-like sets, see docs/policy.md).
func remainder(dst []Box, a *Box, cover []*Box, limit int) (_ []Box, ok bool) {
	clipped := make([]Box, 0, len(cover))
	for _, c := range cover {
		if x, ok := a.Intersect(c); ok {
			if x == *a {
				return dst, true
			}
			clipped = append(clipped, x)
		}
	}
	if len(clipped) == 0 {
		return append(dst, *a), true
	}
	vol := make([]float64, len(clipped))
	idx := make([]int, len(clipped))
	for i := range clipped {
		vol[i] = clipped[i].Log2Volume()
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return vol[idx[i]] > vol[idx[j]] })
	// Drop subtrahends covered by a larger one; quadratic, so only for
	// moderate counts where it pays.
	subs := make([]*Box, 0, len(idx))
	for _, i := range idx {
		covered := false
		if len(idx) <= 4096 {
			for _, s := range subs {
				if s.Covers(&clipped[i]) {
					covered = true
					break
				}
			}
		}
		if !covered {
			subs = append(subs, &clipped[i])
		}
	}
	pieces := []Box{*a}
	var added []Box
	for _, s := range subs {
		// Pieces s misses stay where they are; the ones it hits are
		// replaced by their remainders, gathered in added.
		added = added[:0]
		n := len(pieces)
		for i := 0; i < n; {
			p := &pieces[i]
			if !p.Overlaps(s) {
				i++
				continue
			}
			order := splitOrder(p, s)
			added = subtract(added, p, s, &order)
			n--
			pieces[i] = pieces[n]
		}
		pieces = append(pieces[:n], added...)
		if len(pieces) > limit {
			return dst, false
		}
		if len(pieces) == 0 {
			break
		}
	}
	for i := range pieces {
		if clipFamily(&pieces[i]) {
			dst = append(dst, pieces[i])
		}
	}
	return dst, true
}

// clipFamily trims the address ranges of an IPv4-only box to the IPv4
// space: no IPv4 packet lies beyond it, and tight ranges keep the compiled
// forms small. It reports false for a box no packet can fall in: ICMP and
// ICMPv6 packets have destination port 0 (see Packet).
func clipFamily(b *Box) bool {
	if p := b[DimProto]; p.Lo == p.Hi && (p.Lo == U64(ProtoICMP) || p.Lo == U64(ProtoICMPv6)) && !b[DimDPort].Contains(U128{}) {
		return false
	}
	if b[DimFamily] != Span(4, 4) {
		return true
	}
	for _, d := range []int{DimSrc, DimDst} {
		if v4 := lowOnes(32); v4.Less(b[d].Hi) && !v4.Less(b[d].Lo) {
			b[d].Hi = v4
		}
	}
	return true
}

// splitOrder chooses the order in which a − s is cut. Cutting first along
// the dimension where s is narrowest relative to a leaves the large slabs
// whole; the small dimensions go last so that pieces stay prefix-friendly.
func splitOrder(a, s *Box) [NumDims]int {
	order := defaultOrder
	if a[DimFamily] != s[DimFamily] && a[DimFamily].Covers(s[DimFamily]) {
		// Split families apart first: the other family's piece is then
		// untouched by s, and address ranges stay within one family.
		return order
	}
	var frac [NumDims]float64
	for d := 0; d < NumDims; d++ {
		x, _ := a[d].Intersect(s[d])
		frac[d] = x.log2Width() - a[d].log2Width()
	}
	sort.SliceStable(order[:], func(i, j int) bool { return frac[order[i]] < frac[order[j]] })
	// Cut the protocol before the ports: ports mean nothing without a
	// protocol, and pieces with "any protocol, some ports" have no IKE
	// traffic-selector form.
	p := slices.Index(order[:], DimProto)
	for i := 0; i < p; i++ {
		if order[i] == DimSPort || order[i] == DimDPort {
			copy(order[i+1:p+1], order[i:p])
			order[i] = DimProto
			break
		}
	}
	return order
}

// Subtract returns a − ∪cover as disjoint boxes. It fails with
// ErrDecorrelationBound once more than limit pieces are pending.
func Subtract(a Box, cover []Box, limit int) ([]Box, error) {
	ptrs := make([]*Box, len(cover))
	for i := range cover {
		ptrs[i] = &cover[i]
	}
	out, ok := remainder(nil, &a, ptrs, limit)
	if !ok {
		return nil, fmt.Errorf("policy: subtract: more than %d pieces: %w", limit, ErrDecorrelationBound)
	}
	return out, nil
}
