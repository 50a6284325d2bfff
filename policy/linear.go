package policy

// Linear is the reference first-match scan over ordered rules, with each
// rule's ranges packed (104 bytes a rule rather than a Box's 224) so that the
// scan is as fast as a plain linear scan gets. It is the baseline the
// classifiers are measured against; Policy.Lookup and LinearLookup give the
// same answers over the Box form.
type Linear struct {
	rules    []linearRule
	verdicts []Verdict
}

type linearRule struct {
	srcLo, srcHi, dstLo, dstHi U128
	lo, hi                     [5]uint32 // dport, sport, proto, family, label
}

// NewLinear packs rules (in precedence order) for scanning.
func NewLinear(rules []Rule) *Linear {
	l := &Linear{rules: make([]linearRule, len(rules)), verdicts: make([]Verdict, len(rules))}
	for i := range rules {
		b := &rules[i].Box
		r := &l.rules[i]
		r.srcLo, r.srcHi = b[DimSrc].Lo, b[DimSrc].Hi
		r.dstLo, r.dstHi = b[DimDst].Lo, b[DimDst].Hi
		for j, d := range [5]int{DimDPort, DimSPort, DimProto, DimFamily, DimLabel} {
			r.lo[j], r.hi[j] = uint32(b[d].Lo.Lo), uint32(b[d].Hi.Lo)
		}
		l.verdicts[i] = rules[i].Verdict(i)
	}
	return l
}

// Lookup returns the verdict of the first rule matching p. It does not
// allocate.
func (l *Linear) Lookup(p *Packet) Verdict {
	dp, sp, pr, fa, la := uint32(p.DPort), uint32(p.SPort), uint32(p.Proto), uint32(p.Family), p.Label
	for i := range l.rules {
		r := &l.rules[i]
		if dp-r.lo[0] <= r.hi[0]-r.lo[0] && sp-r.lo[1] <= r.hi[1]-r.lo[1] && pr-r.lo[2] <= r.hi[2]-r.lo[2] &&
			!p.Dst.Less(r.dstLo) && !r.dstHi.Less(p.Dst) && !p.Src.Less(r.srcLo) && !r.srcHi.Less(p.Src) &&
			fa-r.lo[3] <= r.hi[3]-r.lo[3] && la-r.lo[4] <= r.hi[4]-r.lo[4] {
			return l.verdicts[i]
		}
	}
	return NoMatch
}
