package bpf

import "github.com/espy-dpi/espy/policy"

// tuple is a table's hashed prefix lengths, shared with policy/classify.
type tuple = policy.Tuple

// tupleMask returns the key mask of tuple t.
func tupleMask(t tuple) Key {
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
