package bpf

import "github.com/espy-dpi/espy/policy"

// tuple is the number of leading bits a table hashes on, per dimension.
type tuple [policy.NumDims]uint8

var width = tuple{8, 128, 128, 8, 16, 16, 32}

// natural returns the longest tuple under which every packet of b masks to
// the same key: per dimension, the common prefix of the bounds.
func natural(b *policy.Box) tuple {
	var t tuple
	for d := 0; d < policy.NumDims; d++ {
		common := b[d].Lo.Xor(b[d].Hi).LeadingZeros() - (128 - int(width[d]))
		t[d] = uint8(max(common, 0))
	}
	return t
}

// relax shortens a natural tuple so that ranges of similar shape share a
// table: address lengths snap down to a multiple of 8 bits, ports and the
// small fields are exact or not hashed.
func relax(t tuple) tuple {
	for _, d := range []int{policy.DimSrc, policy.DimDst} {
		t[d] -= t[d] % 8
	}
	for _, d := range []int{policy.DimFamily, policy.DimProto, policy.DimSPort, policy.DimDPort, policy.DimLabel} {
		if t[d] < width[d] {
			t[d] = 0
		}
	}
	return t
}

func (t tuple) within(u tuple) bool {
	for d := range t {
		if t[d] > u[d] {
			return false
		}
	}
	return true
}

func (t tuple) bits() int {
	n := 0
	for _, v := range t {
		n += int(v)
	}
	return n
}

func (t tuple) mask() Key {
	src := policy.PrefixMask(128, int(t[policy.DimSrc]))
	dst := policy.PrefixMask(128, int(t[policy.DimDst]))
	return Key{
		Label: uint32(policy.PrefixMask(32, int(t[policy.DimLabel])).Lo),
		Meta: policy.PrefixMask(8, int(t[policy.DimFamily])).Lo<<56 |
			policy.PrefixMask(8, int(t[policy.DimProto])).Lo<<48 |
			policy.PrefixMask(16, int(t[policy.DimSPort])).Lo<<32 |
			policy.PrefixMask(16, int(t[policy.DimDPort])).Lo<<16,
		Src: words(src), Dst: words(dst),
	}
}

// boxKey returns the key of the box's low corner.
func boxKey(b *policy.Box) Key {
	return Key{
		Label: uint32(b[policy.DimLabel].Lo.Lo),
		Meta: b[policy.DimFamily].Lo.Lo<<56 | b[policy.DimProto].Lo.Lo<<48 |
			b[policy.DimSPort].Lo.Lo<<32 | b[policy.DimDPort].Lo.Lo<<16,
		Src: words(b[policy.DimSrc].Lo), Dst: words(b[policy.DimDst].Lo),
	}
}
