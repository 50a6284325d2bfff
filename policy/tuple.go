package policy

// Tuple is, per dimension, the number of leading bits a tuple table hashes
// on. The Go classifier (policy/classify) and the BPF compilation
// (policy/bpf) assign rules to tables by the same tuples.
type Tuple [NumDims]uint8

// DimWidth is the bit width of each dimension.
var DimWidth = Tuple{8, 128, 128, 8, 16, 16, 32}

// NaturalTuple returns the longest tuple under which every packet of b has
// the same masked key: per dimension, the common prefix of the bounds.
func NaturalTuple(b *Box) Tuple {
	var t Tuple
	for d := 0; d < NumDims; d++ {
		common := b[d].Lo.Xor(b[d].Hi).LeadingZeros() - (128 - int(DimWidth[d]))
		t[d] = uint8(max(common, 0))
	}
	return t
}

// Relax shortens a natural tuple so that items of similar shape share a
// table: fewer tables means fewer probes, at the price of a few more items
// per hash bucket. Address lengths snap down to a multiple of 8 bits (16
// snapped fewer tables but more item checks, no clear gain); the other
// dimensions (ports included) are hashed exactly or not at all.
func (t Tuple) Relax() Tuple {
	for _, d := range []int{DimSrc, DimDst} {
		t[d] -= t[d] % 8
	}
	for _, d := range []int{DimFamily, DimProto, DimSPort, DimDPort, DimLabel} {
		if t[d] < DimWidth[d] {
			t[d] = 0
		}
	}
	return t
}

// Within reports whether every dimension of t is at most that of u, so that
// an item with tuple u can live in a table with tuple t.
func (t Tuple) Within(u Tuple) bool {
	for d := range t {
		if t[d] > u[d] {
			return false
		}
	}
	return true
}

// Bits returns the total number of hashed bits: more bits, fewer collisions.
func (t Tuple) Bits() int {
	n := 0
	for _, v := range t {
		n += int(v)
	}
	return n
}
