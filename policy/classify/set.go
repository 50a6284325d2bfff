package classify

import (
	"errors"
	"fmt"

	"github.com/espy-dpi/espy/policy"
)

// Set is an SPD ready for fast lookups: the decorrelated entries in a
// disjoint classifier or, when decorrelation is not wanted or exceeds its
// bound, the ordered rules in a precedence classifier. Both answer exactly as
// the linear first-match scan over the ordered rules.
type Set struct {
	c        *Classifier
	d        *policy.Decorrelated // nil when serving ordered rules
	verdicts []policy.Verdict
	byName   map[string]int32
	gen      uint32
	// Fallback explains why a decorrelated set is served as ordered rules;
	// empty otherwise.
	Fallback string
}

// Build prepares rules (in precedence order) for lookup. With decorrelate
// set, it decorrelates them under limit entries and falls back to ordered
// rules, recording why in Set.Fallback, when the bound is exceeded.
func Build(rules []policy.Rule, decorrelate bool, limit int) (*Set, error) {
	s := &Set{byName: make(map[string]int32, len(rules))}
	for i := range rules {
		s.value(&rules[i], i)
	}
	if decorrelate {
		d, err := policy.Decorrelate(rules, limit)
		switch {
		case err == nil:
			s.d = d
			s.c = New(true)
			for _, e := range d.Entries() {
				if err := s.c.Insert(Item{ID: e.ID, Box: e.Box, Value: s.byName[e.Rule]}); err != nil {
					return nil, err
				}
			}
			return s, nil
		case errors.Is(err, policy.ErrDecorrelationBound):
			s.Fallback = err.Error()
		default:
			return nil, err
		}
	}
	s.c = New(false)
	for i := range rules {
		if err := s.c.Insert(Item{ID: uint64(i + 1), Box: rules[i].Box, Priority: uint32(i), Value: int32(i)}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Set) value(r *policy.Rule, i int) int32 {
	v, ok := s.byName[r.Name]
	if !ok {
		v = int32(len(s.verdicts))
		s.verdicts = append(s.verdicts, r.Verdict(i))
		s.byName[r.Name] = v
	}
	return v
}

// Decorrelated returns the decorrelated set, or nil when the Set serves
// ordered rules.
func (s *Set) Decorrelated() *policy.Decorrelated { return s.d }

// Classifier returns the underlying classifier.
func (s *Set) Classifier() *Classifier { return s.c }

// Len returns the number of classifier items: entries or rules.
func (s *Set) Len() int { return s.c.Len() }

// Generation changes whenever the set is updated; caches key on it.
func (s *Set) Generation() uint32 { return s.gen }

// Lookup returns the verdict for p. It does not allocate.
func (s *Set) Lookup(p *policy.Packet) policy.Verdict {
	v, ok := s.c.Lookup(p)
	if !ok {
		return policy.NoMatch
	}
	return s.verdicts[v]
}

// ErrNotDecorrelated is returned by updates on a Set serving ordered rules.
var ErrNotDecorrelated = errors.New("classify: set is not decorrelated")

// Insert adds a rule (the IKE stack installing narrowed selectors) without
// rebuilding: only the entries the rule overlaps change.
func (s *Set) Insert(r policy.Rule) (policy.Delta, error) {
	if s.d == nil {
		return policy.Delta{}, ErrNotDecorrelated
	}
	delta, err := s.d.Insert(r)
	if err != nil {
		return delta, err
	}
	s.value(&r, -1)
	return delta, s.apply(delta)
}

// Remove deletes the named rule without rebuilding.
func (s *Set) Remove(name string) (policy.Delta, error) {
	if s.d == nil {
		return policy.Delta{}, ErrNotDecorrelated
	}
	delta, err := s.d.Remove(name)
	if err != nil {
		return delta, err
	}
	return delta, s.apply(delta)
}

func (s *Set) apply(delta policy.Delta) error {
	s.gen++
	for _, e := range delta.Removed {
		if !s.c.Delete(e.ID) {
			return fmt.Errorf("classify: update: entry %d of rule %q missing", e.ID, e.Rule)
		}
	}
	for _, e := range delta.Added {
		if err := s.c.Insert(Item{ID: e.ID, Box: e.Box, Value: s.byName[e.Rule]}); err != nil {
			return err
		}
	}
	return nil
}
