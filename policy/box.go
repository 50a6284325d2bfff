package policy

import (
	"fmt"
	"math"
	"strings"
)

// The dimensions of a selector box.
const (
	DimFamily = iota // address family: 4 or 6
	DimSrc           // source (local) address
	DimDst           // destination (remote) address
	DimProto         // IP protocol (next layer protocol)
	DimSPort         // source port, or ICMP type<<8|code
	DimDPort         // destination port
	DimLabel         // security label identifier (0: unlabelled)
	NumDims
)

// Box is the set of packets a selector matches: one interval per dimension.
type Box [NumDims]Interval

// FullBox matches every packet of both families.
func FullBox() Box {
	var b Box
	b[DimFamily] = Span(4, 6)
	b[DimSrc] = Interval{U128{}, MaxU128}
	b[DimDst] = Interval{U128{}, MaxU128}
	b[DimProto] = Span(0, 255)
	b[DimSPort] = Span(0, 65535)
	b[DimDPort] = Span(0, 65535)
	b[DimLabel] = Span(0, math.MaxUint32)
	return b
}

// Contains reports whether the packet lies in b.
func (b *Box) Contains(p *Packet) bool {
	return b[DimFamily].Contains(U64(uint64(p.Family))) &&
		b[DimSrc].Contains(p.Src) &&
		b[DimDst].Contains(p.Dst) &&
		b[DimProto].Contains(U64(uint64(p.Proto))) &&
		b[DimSPort].Contains(U64(uint64(p.SPort))) &&
		b[DimDPort].Contains(U64(uint64(p.DPort))) &&
		b[DimLabel].Contains(U64(uint64(p.Label)))
}

// Overlaps reports whether b and o share a packet.
func (b *Box) Overlaps(o *Box) bool {
	// Addresses and ports first: they tell boxes apart most often.
	return b[DimSrc].Overlaps(o[DimSrc]) && b[DimDst].Overlaps(o[DimDst]) &&
		b[DimDPort].Overlaps(o[DimDPort]) && b[DimSPort].Overlaps(o[DimSPort]) &&
		b[DimProto].Overlaps(o[DimProto]) && b[DimFamily].Overlaps(o[DimFamily]) &&
		b[DimLabel].Overlaps(o[DimLabel])
}

// Covers reports whether every packet of o lies in b.
func (b *Box) Covers(o *Box) bool {
	for d := range b {
		if !b[d].Covers(o[d]) {
			return false
		}
	}
	return true
}

// Intersect returns b ∩ o; ok is false when they are disjoint.
func (b *Box) Intersect(o *Box) (Box, bool) {
	var r Box
	for d := range b {
		iv, ok := b[d].Intersect(o[d])
		if !ok {
			return r, false
		}
		r[d] = iv
	}
	return r, true
}

// Log2Volume returns log2 of the number of points in b.
func (b *Box) Log2Volume() float64 {
	var v float64
	for d := range b {
		v += b[d].log2Width()
	}
	return v
}

// subtract appends the pieces of a − s to dst, with s overlapping a, splitting
// along the dimensions in the order given. The pieces are disjoint and their
// union is exactly a − s.
func subtract(dst []Box, a, s *Box, order *[NumDims]int) []Box {
	rest := *a
	for _, d := range order {
		if rest[d].Lo.Less(s[d].Lo) {
			p := rest
			p[d].Hi = s[d].Lo.Dec()
			dst = append(dst, p)
			rest[d].Lo = s[d].Lo
		}
		if s[d].Hi.Less(rest[d].Hi) {
			p := rest
			p[d].Lo = s[d].Hi.Inc()
			dst = append(dst, p)
			rest[d].Hi = s[d].Hi
		}
	}
	return dst
}

// defaultOrder splits the small dimensions before the addresses.
var defaultOrder = [NumDims]int{DimFamily, DimLabel, DimProto, DimDPort, DimSPort, DimDst, DimSrc}

// String formats b with the addresses in their family's notation.
func (b Box) String() string {
	var sb strings.Builder
	fam := uint8(6)
	if b[DimFamily].Hi == U64(4) {
		fam = 4
	}
	fmt.Fprintf(&sb, "family=%s src=%s dst=%s proto=%s sport=%s dport=%s",
		famString(b[DimFamily]), addrRangeString(fam, b[DimSrc]), addrRangeString(fam, b[DimDst]),
		smallRangeString(b[DimProto], 255), smallRangeString(b[DimSPort], 65535), smallRangeString(b[DimDPort], 65535))
	if b[DimLabel] != Span(0, math.MaxUint32) {
		fmt.Fprintf(&sb, " label=%s", smallRangeString(b[DimLabel], math.MaxUint32))
	}
	return sb.String()
}

func famString(iv Interval) string {
	switch {
	case iv.Lo == iv.Hi:
		return fmt.Sprint(iv.Lo.Lo)
	}
	return "any"
}

func smallRangeString(iv Interval, max uint64) string {
	switch {
	case iv.Lo.Lo == 0 && iv.Hi.Lo == max:
		return "any"
	case iv.Lo == iv.Hi:
		return fmt.Sprint(iv.Lo.Lo)
	}
	return fmt.Sprintf("%d-%d", iv.Lo.Lo, iv.Hi.Lo)
}

func addrRangeString(fam uint8, iv Interval) string {
	width := 128
	if fam == 4 {
		width = 32
	}
	if iv.Lo == (U128{}) && (iv.Hi == MaxU128 || (fam == 4 && iv.Hi == lowOnes(32))) {
		return "any"
	}
	if n, ok := prefixLen(iv, width); ok {
		return fmt.Sprintf("%s/%d", U128Addr(fam, iv.Lo), n)
	}
	return fmt.Sprintf("%s-%s", U128Addr(fam, iv.Lo), U128Addr(fam, iv.Hi))
}

// prefixLen reports whether iv is exactly a prefix of a width-bit field.
func prefixLen(iv Interval, width int) (int, bool) {
	diff := iv.Hi.Sub(iv.Lo)
	// diff must be 2^k-1 and Lo aligned to 2^k.
	if diff.And(diff.Inc()) != (U128{}) {
		return 0, false
	}
	if iv.Lo.And(diff) != (U128{}) {
		return 0, false
	}
	k := 128 - diff.LeadingZeros()
	if k > width {
		return 0, false
	}
	return width - k, true
}

func log2u(x uint64) float64 { return math.Log2(float64(x)) }
