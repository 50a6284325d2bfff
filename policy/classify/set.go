package classify

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/espy-dpi/espy/policy"
)

// Set is an SPD ready for fast lookups. It answers exactly as the linear
// first-match scan over the ordered rules.
//
// Lookups go to a precedence classifier over the rules themselves; the
// decorrelated entries, when asked for, are kept alongside for the BPF
// compiler, for IKE narrowing and for reports. Indexing rules rather than
// entries is a measured choice: decorrelation cuts rules into pieces whose
// ranges no longer share prefix shapes, so the pieces need 4-5 times as many
// tuple tables as the rules do (143 against 34 on ClassBench acl1_10K) and a
// disjoint lookup that misses must probe all of them, while the ordered
// lookup stops early once no later table can beat its best hit. Both forms
// are kept correct by the same property tests; see docs/policy.md.
type Set struct {
	c        *Classifier
	d        *policy.Decorrelated // nil unless decorrelation was asked for and fit
	rules    map[string]ruleRef
	verdicts []policy.Verdict
	gen      uint32
	nextID   uint64
	// Fallback explains why decorrelation was not kept; empty otherwise.
	Fallback string
}

type ruleRef struct {
	id    uint64
	prio  uint32
	value int32
}

// ErrPrecedence is returned when two rules of a Set share a precedence: the
// classifier orders by precedence alone.
var ErrPrecedence = errors.New("classify: duplicate precedence")

// Build prepares rules (in precedence order; precedences must be distinct)
// for lookup. With decorrelate set it also decorrelates them under limit
// entries; when the bound is exceeded the Set still serves every lookup and
// records why in Fallback.
func Build(rules []policy.Rule, decorrelate bool, limit int) (*Set, error) {
	s := &Set{c: New(false), rules: make(map[string]ruleRef, len(rules)), gen: 1}
	s.c.bulk = true
	s.c.where = make(map[uint64]whereItem, len(rules))
	for i := range rules {
		if i > 0 && rules[i].Precedence <= rules[i-1].Precedence {
			return nil, fmt.Errorf("classify: rule %q: precedence %d not above %q's %d: %w",
				rules[i].Name, rules[i].Precedence, rules[i-1].Name, rules[i-1].Precedence, ErrPrecedence)
		}
	}
	// Coarse rules first: they open the broad tables that finer rules can
	// then share, which keeps the table count, and so the probes, low.
	order := make([]int, len(rules))
	bits := make([]int, len(rules))
	for i := range order {
		order[i] = i
		bits[i] = policy.NaturalTuple(&rules[i].Box).Bits()
	}
	sort.SliceStable(order, func(a, b int) bool { return bits[order[a]] < bits[order[b]] })
	s.verdicts = make([]policy.Verdict, len(rules))
	for _, i := range order {
		if err := s.add(&rules[i], i); err != nil {
			return nil, err
		}
	}
	s.c.finish()
	if err := s.tune(rules, order); err != nil {
		return nil, err
	}
	// Once, for the classifier tune kept: the flags cost a pass over the
	// pairs of items that may overlap.
	s.c.setFinal()
	if decorrelate {
		d, err := policy.Decorrelate(rules, limit)
		switch {
		case err == nil:
			s.d = d
		case errors.Is(err, policy.ErrDecorrelationBound):
			s.Fallback = err.Error()
		default:
			return nil, err
		}
	}
	return s, nil
}

func (s *Set) add(r *policy.Rule, index int) error {
	if _, dup := s.rules[r.Name]; dup {
		return fmt.Errorf("classify: rule %q: %w", r.Name, policy.ErrBadRule)
	}
	if r.Precedence < 0 || r.Precedence > 1<<31 {
		return fmt.Errorf("classify: rule %q: precedence %d out of range", r.Name, r.Precedence)
	}
	s.nextID++
	ref := ruleRef{id: s.nextID, prio: uint32(r.Precedence)}
	if index >= 0 && index < len(s.verdicts) {
		ref.value = int32(index)
		s.verdicts[index] = r.Verdict(index)
	} else {
		ref.value = int32(len(s.verdicts))
		s.verdicts = append(s.verdicts, r.Verdict(index))
	}
	if err := s.c.Insert(Item{ID: ref.id, Box: r.Box, Priority: ref.prio, Value: ref.value}); err != nil {
		return err
	}
	s.rules[r.Name] = ref
	return nil
}

// Decorrelated returns the decorrelated entries, or nil when decorrelation
// was not asked for or exceeded its bound.
func (s *Set) Decorrelated() *policy.Decorrelated { return s.d }

// Classifier returns the underlying classifier.
func (s *Set) Classifier() *Classifier { return s.c }

// Len returns the number of rules.
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

func (s *Set) verdict(v int32) policy.Verdict {
	if v < 0 {
		return policy.NoMatch
	}
	return s.verdicts[v]
}

// Insert adds a rule (the IKE stack installing narrowed selectors) with one
// classifier insert and, when decorrelated entries are kept, an incremental
// update of only the entries the rule overlaps. Its precedence must differ
// from every other rule's. The returned delta lists the entries changed.
func (s *Set) Insert(r policy.Rule) (policy.Delta, error) {
	if _, dup := s.rules[r.Name]; dup {
		return policy.Delta{}, fmt.Errorf("classify: insert %q: %w: name already used", r.Name, policy.ErrBadRule)
	}
	if r.Precedence < 0 || r.Precedence > 1<<31 {
		return policy.Delta{}, fmt.Errorf("classify: insert %q: precedence %d out of range 0..2^31", r.Name, r.Precedence)
	}
	for _, ref := range s.rules {
		if ref.prio == uint32(r.Precedence) {
			return policy.Delta{}, fmt.Errorf("classify: insert %q: precedence %d in use: %w", r.Name, r.Precedence, ErrPrecedence)
		}
	}
	var delta policy.Delta
	if s.d != nil {
		var err error
		if delta, err = s.d.Insert(r); err != nil {
			return delta, err
		}
	}
	if err := s.add(&r, -1); err != nil {
		return delta, err
	}
	s.bump()
	return delta, nil
}

// Remove deletes the named rule.
func (s *Set) Remove(name string) (policy.Delta, error) {
	ref, ok := s.rules[name]
	if !ok {
		return policy.Delta{}, fmt.Errorf("classify: remove %q: %w", name, policy.ErrNoRule)
	}
	var delta policy.Delta
	if s.d != nil {
		var err error
		if delta, err = s.d.Remove(name); err != nil {
			return delta, err
		}
	}
	s.c.Delete(ref.id)
	delete(s.rules, name)
	s.bump()
	return delta, nil
}

// BuildDisjoint indexes decorrelated entries in a first-hit classifier. It
// answers exactly as the Set it came from; it exists to measure the design
// alternative and to check the entries (see Set).
func BuildDisjoint(d *policy.Decorrelated) (*Classifier, []policy.Verdict, error) {
	c := New(true)
	c.bulk = true
	var verdicts []policy.Verdict
	vals := map[string]int32{}
	for i, r := range d.Rules() {
		vals[r.Name] = int32(len(verdicts))
		verdicts = append(verdicts, r.Verdict(i))
	}
	es := d.Entries()
	// Coarse items first: they open the broad tables that the finer pieces
	// can then share, keeping the table count low.
	slices.SortStableFunc(es, func(a, b policy.Entry) int {
		return policy.NaturalTuple(&a.Box).Bits() - policy.NaturalTuple(&b.Box).Bits()
	})
	for _, e := range es {
		if err := c.Insert(Item{ID: e.ID, Box: e.Box, Value: vals[e.Rule]}); err != nil {
			return nil, nil, err
		}
	}
	c.finish()
	return c, verdicts, nil
}

// bump advances the generation, skipping 0, which marks empty cache slots.
func (s *Set) bump() {
	if s.gen++; s.gen == 0 {
		s.gen = 1
	}
}

// FromPolicy builds the Set for a parsed policy: decorrelated entries are
// kept in ModeDecorrelated (under p.MaxEntries; past it the Set records why
// in Fallback and still serves every lookup), and in ModeForbid the rules
// are already disjoint.
func FromPolicy(p *policy.Policy) (*Set, error) {
	return Build(p.Rules, p.Mode == policy.ModeDecorrelated, p.MaxEntries)
}

// tune builds the classifier again under each of tuneLimits and keeps
// whichever does the least work looking up a sample of packets, the low
// corner of every rule (at most maxSample of them, evenly spread). Fewer,
// fuller tables save probes on some rule sets (acl1, ipc1) and cost item
// checks on others (fw1); which wins is measured here rather than assumed.
// All candidates answer every lookup the same.
func (s *Set) tune(rules []policy.Rule, order []int) error {
	if len(rules) < 2 {
		return nil
	}
	sample := tuneSample(rules)
	best := s.c.sampleCost(sample)
	for _, limit := range tuneLimits {
		if limit == s.c.limit {
			continue
		}
		alt, err := s.rebuild(rules, order, limit)
		if err != nil {
			return err
		}
		if cost := alt.sampleCost(sample); cost < best {
			s.c, best = alt, cost
		}
	}
	return nil
}

// tuneLimits are the collision limits tune tries. On ClassBench, 7 suits
// fw1_10K, 11 ipc1_10K, 21 acl1_10K and 23 or 31 the 1K sets (fewer,
// fuller tables); the cost is jagged in the limit (acl1_10K: 12 costs 1.7
// times what 21 does), so a few are tried rather than one tuned.
var tuneLimits = []int{DefaultCollisionLimit, 11, 21, 23, 31}

// rebuild builds a classifier over the set's rules, inserted in order,
// under the given collision limit.
func (s *Set) rebuild(rules []policy.Rule, order []int, limit int) (*Classifier, error) {
	c := New(false)
	c.limit = limit
	c.bulk = true
	c.where = make(map[uint64]whereItem, len(order))
	for _, i := range order {
		ref := s.rules[rules[i].Name]
		if err := c.Insert(Item{ID: ref.id, Box: rules[i].Box, Priority: ref.prio, Value: ref.value}); err != nil {
			return nil, err
		}
	}
	c.finish()
	return c, nil
}

// tuneSample returns the low corner of every rule, at most maxSample of
// them, evenly spread.
func tuneSample(rules []policy.Rule) []policy.Packet {
	step := max(1, len(rules)/maxSample)
	var out []policy.Packet
	for i := 0; i < len(rules); i += step {
		b := &rules[i].Box
		out = append(out, policy.Packet{
			Src: b[policy.DimSrc].Lo, Dst: b[policy.DimDst].Lo, Label: uint32(b[policy.DimLabel].Lo.Lo),
			SPort: uint16(b[policy.DimSPort].Lo.Lo), DPort: uint16(b[policy.DimDPort].Lo.Lo),
			Family: uint8(b[policy.DimFamily].Lo.Lo), Proto: uint8(b[policy.DimProto].Lo.Lo),
		})
	}
	return out
}

// maxSample bounds the packets tune looks up.
const maxSample = 4096
