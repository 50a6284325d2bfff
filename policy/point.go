package policy

import "math/rand/v2"

// PointIn returns a valid packet inside b, or ok=false when b holds none
// (a box may span family values while its addresses exist in one family
// only). With corner set it prefers the box's low corner, otherwise a
// random point. Tests and benchmarks use it to draw packets that exercise a
// given rule or entry.
func PointIn(b *Box, rng *rand.Rand, corner bool) (Packet, bool) {
	v4max := lowOnes(32)
	pick := func(iv Interval) U128 {
		if corner {
			return iv.Lo
		}
		return randIn(iv, rng)
	}
	var fams []uint8
	for _, f := range []uint8{4, 6} {
		if b[DimFamily].Contains(U64(uint64(f))) {
			fams = append(fams, f)
		}
	}
	if !corner {
		rng.Shuffle(len(fams), func(i, j int) { fams[i], fams[j] = fams[j], fams[i] })
	}
	for _, fam := range fams {
		src, dst := b[DimSrc], b[DimDst]
		if fam == 4 {
			var ok1, ok2 bool
			src, ok1 = src.Intersect(Interval{U128{}, v4max})
			dst, ok2 = dst.Intersect(Interval{U128{}, v4max})
			if !ok1 || !ok2 {
				continue
			}
		}
		p := Packet{Family: fam, Src: pick(src), Dst: pick(dst),
			Proto: uint8(pick(b[DimProto]).Lo), SPort: uint16(pick(b[DimSPort]).Lo),
			DPort: uint16(pick(b[DimDPort]).Lo), Label: uint32(pick(b[DimLabel]).Lo)}
		if isICMP(p.Proto) {
			// ICMP packets carry destination port 0 (see Packet).
			if b[DimDPort].Contains(U128{}) {
				p.DPort = 0
			} else {
				p.Proto = 0
				for v := b[DimProto].Lo.Lo; v <= b[DimProto].Hi.Lo; v++ {
					if !isICMP(uint8(v)) {
						p.Proto = uint8(v)
						break
					}
				}
				if isICMP(p.Proto) || !b[DimProto].Contains(U64(uint64(p.Proto))) {
					continue
				}
			}
		}
		return p, true
	}
	return Packet{}, false
}

// randIn returns a random value of iv, biased towards its bounds, where
// off-by-one errors live.
func randIn(iv Interval, rng *rand.Rand) U128 {
	switch rng.IntN(8) {
	case 0:
		return iv.Lo
	case 1:
		return iv.Hi
	}
	w := iv.Hi.Sub(iv.Lo)
	var off U128
	switch {
	case w.Hi != 0:
		off = U128{Lo: rng.Uint64()}
		if w.Hi == ^uint64(0) {
			off.Hi = rng.Uint64()
		} else {
			off.Hi = rng.Uint64N(w.Hi + 1)
		}
		if off.Hi == w.Hi && off.Lo > w.Lo {
			off.Lo = w.Lo
		}
	case w.Lo == ^uint64(0):
		off = U128{Lo: rng.Uint64()}
	default:
		off = U128{Lo: rng.Uint64N(w.Lo + 1)}
	}
	r := iv.Lo
	lo, c := addCarry(r.Lo, off.Lo)
	return U128{r.Hi + off.Hi + c, lo}
}

func addCarry(a, b uint64) (uint64, uint64) {
	s := a + b
	if s < a {
		return s, 1
	}
	return s, 0
}

func isICMP(proto uint8) bool { return proto == ProtoICMP || proto == ProtoICMPv6 }
