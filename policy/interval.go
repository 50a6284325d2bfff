package policy

import (
	"math/bits"
	"net/netip"
)

// U128 is an unsigned 128-bit integer. Every selector dimension is stored as
// one so that a single box algebra serves IPv6 addresses and small fields.
type U128 struct{ Hi, Lo uint64 }

// MaxU128 is the largest U128.
var MaxU128 = U128{^uint64(0), ^uint64(0)}

// U64 returns v as a U128.
func U64(v uint64) U128 { return U128{Lo: v} }

// Less reports whether a < b.
func (a U128) Less(b U128) bool { return a.Hi < b.Hi || (a.Hi == b.Hi && a.Lo < b.Lo) }

// Cmp returns -1, 0 or +1 as a is less than, equal to or greater than b.
func (a U128) Cmp(b U128) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// Inc returns a+1, wrapping at MaxU128.
func (a U128) Inc() U128 {
	lo, c := bits.Add64(a.Lo, 1, 0)
	return U128{a.Hi + c, lo}
}

// Dec returns a-1, wrapping at zero.
func (a U128) Dec() U128 {
	lo, b := bits.Sub64(a.Lo, 1, 0)
	return U128{a.Hi - b, lo}
}

// Sub returns a-b.
func (a U128) Sub(b U128) U128 {
	lo, br := bits.Sub64(a.Lo, b.Lo, 0)
	return U128{a.Hi - b.Hi - br, lo}
}

// And returns a&b.
func (a U128) And(b U128) U128 { return U128{a.Hi & b.Hi, a.Lo & b.Lo} }

// Or returns a|b.
func (a U128) Or(b U128) U128 { return U128{a.Hi | b.Hi, a.Lo | b.Lo} }

// Not returns ^a.
func (a U128) Not() U128 { return U128{^a.Hi, ^a.Lo} }

// Xor returns a^b.
func (a U128) Xor(b U128) U128 { return U128{a.Hi ^ b.Hi, a.Lo ^ b.Lo} }

// LeadingZeros returns the number of leading zero bits in a.
func (a U128) LeadingZeros() int {
	if a.Hi != 0 {
		return bits.LeadingZeros64(a.Hi)
	}
	return 64 + bits.LeadingZeros64(a.Lo)
}

// PrefixMask returns the mask of the top n bits of a width-bit field held in
// the low bits of a U128 (width ≤ 128).
func PrefixMask(width, n int) U128 {
	if n <= 0 {
		return U128{}
	}
	if n > width {
		n = width
	}
	all := lowOnes(width)
	return all.And(lowOnes(width - n).Not())
}

// lowOnes returns a U128 with its low n bits set.
func lowOnes(n int) U128 {
	switch {
	case n <= 0:
		return U128{}
	case n >= 128:
		return MaxU128
	case n >= 64:
		return U128{Hi: (uint64(1) << (n - 64)) - 1, Lo: ^uint64(0)}
	}
	return U128{Lo: (uint64(1) << n) - 1}
}

// AddrU128 returns addr as an integer: IPv4 addresses occupy the low 32 bits.
func AddrU128(a netip.Addr) U128 {
	if a.Is4() {
		b := a.As4()
		return U128{Lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var v U128
	for i := 0; i < 8; i++ {
		v.Hi = v.Hi<<8 | uint64(b[i])
		v.Lo = v.Lo<<8 | uint64(b[8+i])
	}
	return v
}

// U128Addr is the inverse of AddrU128 for the given family (4 or 6).
func U128Addr(family uint8, v U128) netip.Addr {
	if family == 4 {
		x := uint32(v.Lo)
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(v.Hi >> (8 * i))
		b[15-i] = byte(v.Lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// Interval is an inclusive range [Lo, Hi] with Lo ≤ Hi.
type Interval struct{ Lo, Hi U128 }

// Span returns the interval [lo, hi] of small integers.
func Span(lo, hi uint64) Interval { return Interval{U64(lo), U64(hi)} }

// Contains reports whether v lies in iv.
func (iv Interval) Contains(v U128) bool { return !v.Less(iv.Lo) && !iv.Hi.Less(v) }

// Overlaps reports whether iv and o share a value.
func (iv Interval) Overlaps(o Interval) bool { return !iv.Hi.Less(o.Lo) && !o.Hi.Less(iv.Lo) }

// Covers reports whether every value of o lies in iv.
func (iv Interval) Covers(o Interval) bool { return !o.Lo.Less(iv.Lo) && !iv.Hi.Less(o.Hi) }

// Intersect returns the common part of iv and o; ok is false when empty.
func (iv Interval) Intersect(o Interval) (Interval, bool) {
	r := iv
	if r.Lo.Less(o.Lo) {
		r.Lo = o.Lo
	}
	if o.Hi.Less(r.Hi) {
		r.Hi = o.Hi
	}
	return r, !r.Hi.Less(r.Lo)
}

// log2Width returns log2(Hi-Lo+1) as a float, used to rank boxes by volume.
func (iv Interval) log2Width() float64 {
	w := iv.Hi.Sub(iv.Lo)
	if w.Hi != 0 {
		return 64 + float64(64-bits.LeadingZeros64(w.Hi))
	}
	if w.Lo == ^uint64(0) {
		return 64
	}
	return log2u(w.Lo + 1)
}
