package classify

import (
	"math/bits"

	"github.com/espy-dpi/espy/policy"
)

// tuple is a table's hashed prefix lengths, shared with policy/bpf.
type tuple = policy.Tuple

// key is a packet's selector fields packed into words, in the order the
// masks apply to. The low 32 bits of both addresses share word lo, which
// is all an IPv4 address has (see policy.AddrU128): an IPv4 packet's key
// is lo and meta, with the other words zero.
type key struct {
	lo    uint64 // src.Lo<<32 | dst.Lo&(1<<32-1)
	meta  uint64 // family<<56 | proto<<48 | sport<<32 | dport<<16
	up    uint64 // src.Lo>>32<<32 | dst.Lo>>32
	srcHi uint64
	dstHi uint64
	label uint64
}

// split returns the words lo and up of a source and destination address.
func split(src, dst policy.U128) (lo, up uint64) {
	return src.Lo<<32 | dst.Lo&(1<<32-1), src.Lo>>32<<32 | dst.Lo>>32
}

func packetKey(p *policy.Packet) key {
	lo, up := split(p.Src, p.Dst)
	return key{
		lo: lo, up: up, srcHi: p.Src.Hi, dstHi: p.Dst.Hi,
		meta:  metaWord(p.Family, p.Proto, p.SPort, p.DPort),
		label: uint64(p.Label),
	}
}

func metaWord(family, proto uint8, sport, dport uint16) uint64 {
	return uint64(family)<<56 | uint64(proto)<<48 | uint64(sport)<<32 | uint64(dport)<<16
}

// boxKey returns the key of the box's low corner: under any tuple within
// the box's natural tuple, it masks to the same value as every packet in b.
func boxKey(b *policy.Box) key {
	lo, up := split(b[policy.DimSrc].Lo, b[policy.DimDst].Lo)
	return key{
		lo: lo, up: up, srcHi: b[policy.DimSrc].Lo.Hi, dstHi: b[policy.DimDst].Lo.Hi,
		meta: metaWord(uint8(b[policy.DimFamily].Lo.Lo), uint8(b[policy.DimProto].Lo.Lo),
			uint16(b[policy.DimSPort].Lo.Lo), uint16(b[policy.DimDPort].Lo.Lo)),
		label: b[policy.DimLabel].Lo.Lo,
	}
}

// tupleMask returns the key mask of tuple t.
func tupleMask(t tuple) key {
	src := policy.PrefixMask(128, int(t[policy.DimSrc]))
	dst := policy.PrefixMask(128, int(t[policy.DimDst]))
	lo, up := split(src, dst)
	return key{
		lo: lo, up: up, srcHi: src.Hi, dstHi: dst.Hi,
		meta: metaWord(uint8(policy.PrefixMask(8, int(t[policy.DimFamily])).Lo),
			uint8(policy.PrefixMask(8, int(t[policy.DimProto])).Lo),
			uint16(policy.PrefixMask(16, int(t[policy.DimSPort])).Lo),
			uint16(policy.PrefixMask(16, int(t[policy.DimDPort])).Lo)),
		label: policy.PrefixMask(32, int(t[policy.DimLabel])).Lo,
	}
}

// hash mixes a key; a folded multiply per word pair is enough for keys
// that are masked prefixes of fairly random addresses.
func (k *key) hash() uint64 { return k.maskedHash(&ones) }

// ones is the mask that keeps every bit.
var ones = key{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}

// Hash constants (wyhash's).
const c1, c2, c3, c4 = 0xa0761d6478bd642f, 0xe7037ed1a0b428db, 0x8ebc6af09c88c6e3, 0x589965cc75374cc3

// v4Rest is the part of every hash that an IPv4 key under a label-blind
// mask (any compact table's) contributes through its zero words.
var v4Rest = mum(c3, c4) ^ mum(c1, c2^c3)

// maskedHash returns the hash of k masked by m: three independent
// 64x64->128-bit folded multiplies (wyhash's), masking word by word as it
// mixes, so the masked key is never stored. For an IPv4 key under a mask
// that ignores labels it is mum(lo&m.lo^c1, meta&m.meta^c2) ^ v4Rest,
// one multiply, which the IPv4 lookup loop computes alone.
func (k *key) maskedHash(m *key) uint64 {
	return mum(k.lo&m.lo^c1, k.meta&m.meta^c2) ^ mum(k.up&m.up^c3, k.srcHi&m.srcHi^c4) ^
		mum(k.dstHi&m.dstHi^c1, (k.label&m.label)^c2^c3)
}

// mum folds the 128-bit product of a and b.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
