package classify

import (
	"math/bits"

	"github.com/espy-dpi/espy/policy"
)

// tuple is a table's hashed prefix lengths, shared with policy/bpf.
type tuple = policy.Tuple

// key is a packet's selector fields packed into words, in the order the
// masks apply to.
type key struct {
	srcHi, srcLo, dstHi, dstLo uint64
	meta                       uint64 // family<<56 | proto<<48 | sport<<32 | dport<<16
	label                      uint64
}

func packetKey(p *policy.Packet) key {
	return key{
		srcHi: p.Src.Hi, srcLo: p.Src.Lo, dstHi: p.Dst.Hi, dstLo: p.Dst.Lo,
		meta:  uint64(p.Family)<<56 | uint64(p.Proto)<<48 | uint64(p.SPort)<<32 | uint64(p.DPort)<<16,
		label: uint64(p.Label),
	}
}

// boxKey returns the key of the box's low corner: under any tuple within
// the box's natural tuple, it masks to the same value as every packet in b.
func boxKey(b *policy.Box) key {
	return key{
		srcHi: b[policy.DimSrc].Lo.Hi, srcLo: b[policy.DimSrc].Lo.Lo,
		dstHi: b[policy.DimDst].Lo.Hi, dstLo: b[policy.DimDst].Lo.Lo,
		meta: b[policy.DimFamily].Lo.Lo<<56 | b[policy.DimProto].Lo.Lo<<48 |
			b[policy.DimSPort].Lo.Lo<<32 | b[policy.DimDPort].Lo.Lo<<16,
		label: b[policy.DimLabel].Lo.Lo,
	}
}

// tupleMask returns the key mask of tuple t.
func tupleMask(t tuple) key {
	src := policy.PrefixMask(128, int(t[policy.DimSrc]))
	dst := policy.PrefixMask(128, int(t[policy.DimDst]))
	return key{
		srcHi: src.Hi, srcLo: src.Lo, dstHi: dst.Hi, dstLo: dst.Lo,
		meta: policy.PrefixMask(8, int(t[policy.DimFamily])).Lo<<56 |
			policy.PrefixMask(8, int(t[policy.DimProto])).Lo<<48 |
			policy.PrefixMask(16, int(t[policy.DimSPort])).Lo<<32 |
			policy.PrefixMask(16, int(t[policy.DimDPort])).Lo<<16,
		label: policy.PrefixMask(32, int(t[policy.DimLabel])).Lo,
	}
}

// hash mixes a masked key; a multiply-xorshift per word is enough for keys
// that are masked prefixes of fairly random addresses.
func (k *key) hash() uint64 { return k.maskedHash(&ones) }

// ones is the mask that keeps every bit.
var ones = key{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}

// maskedHash returns the hash of k masked by m. It masks word by word as it
// mixes, so the masked key is never stored: two independent 64x64->128-bit
// multiplies (wyhash's folded multiply), one over the addresses' low words
// and one over the rest, then one more to combine them.
func (k *key) maskedHash(m *key) uint64 {
	const c1, c2, c3, c4 = 0xa0761d6478bd642f, 0xe7037ed1a0b428db, 0x8ebc6af09c88c6e3, 0x589965cc75374cc3
	a := mum(k.srcLo&m.srcLo^c1, k.dstLo&m.dstLo^c2)
	b := mum(k.srcHi&m.srcHi^k.meta&m.meta^c3, k.dstHi&m.dstHi^(k.label&m.label)<<8^c4)
	return mum(a^c1, b^c3)
}

// mum folds the 128-bit product of a and b.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
