package policy

// Overlap names two rules that share packets and the region they share.
// A is consulted before B.
type Overlap struct {
	A, B   int
	Region Box
}

// FindOverlaps returns up to limit overlapping pairs of rules, in rule order
// (limit ≤ 0: all of them).
func FindOverlaps(rules []Rule, limit int) []Overlap {
	var out []Overlap
	for j := range rules {
		for i := 0; i < j; i++ {
			if x, ok := rules[i].Box.Intersect(&rules[j].Box); ok {
				out = append(out, Overlap{A: i, B: j, Region: x})
				if limit > 0 && len(out) >= limit {
					return out
				}
			}
		}
	}
	return out
}

// CountOverlaps returns the number of overlapping pairs of rules.
func CountOverlaps(rules []Rule) int {
	n := 0
	for j := range rules {
		for i := 0; i < j; i++ {
			if rules[i].Box.Overlaps(&rules[j].Box) {
				n++
			}
		}
	}
	return n
}

// Shadow reports a rule no packet can reach: every packet it matches is
// matched first by the earlier rules By.
type Shadow struct {
	Rule int
	By   []int
	// Redundant is true when every shadowing rule has the same action and
	// SA, so the shadowed rule changes nothing; false when it is a conflict
	// (the rule's intended action never happens).
	Redundant bool
}

// ShadowLimit bounds the work spent proving one rule shadowed; rules whose
// remainder grows past it are reported as not shadowed.
const ShadowLimit = 1 << 16

// FindShadowed returns the rules that no packet can reach.
func FindShadowed(rules []Rule) []Shadow {
	var out []Shadow
	var cover []*Box
	var by []int
	for j := range rules {
		cover, by = cover[:0], by[:0]
		for i := 0; i < j; i++ {
			if rules[i].Box.Overlaps(&rules[j].Box) {
				cover = append(cover, &rules[i].Box)
				by = append(by, i)
			}
		}
		if len(cover) == 0 {
			continue
		}
		rest, ok := remainder(nil, &rules[j].Box, cover, ShadowLimit)
		if !ok || len(rest) > 0 {
			continue
		}
		s := Shadow{Rule: j, By: append([]int(nil), by...), Redundant: true}
		for _, i := range by {
			if rules[i].Action != rules[j].Action || rules[i].SA != rules[j].SA {
				s.Redundant = false
			}
		}
		out = append(out, s)
	}
	return out
}
