package policy

import (
	"fmt"
	"sort"
)

// Entry is one decorrelated SPD entry: a box disjoint from every other entry,
// with the verdict of the rule it came from.
type Entry struct {
	// ID identifies the entry across incremental updates.
	ID uint64
	// Box is the set of packets the entry matches.
	Box Box
	// Rule is the name of the rule the entry came from.
	Rule string
	// Action and SA are the rule's.
	Action Action
	SA     string
}

// Delta is the change an incremental update made to a decorrelated set.
type Delta struct {
	Added   []Entry
	Removed []Entry
}

// Decorrelated is an SPD rewritten into disjoint entries (RFC 4301 section
// 4.4.1, Appendix B): each rule contributes the part of its selectors that
// no earlier rule matches. It is updated in place when one rule is added or
// removed, touching only the entries the rule overlaps.
type Decorrelated struct {
	rules  []Rule
	pieces [][]Entry // pieces[i] belong to rules[i]
	limit  int
	total  int
	nextID uint64
}

// Decorrelate rewrites rules (in precedence order) into disjoint entries. It
// fails with ErrDecorrelationBound when more than limit entries would result.
func Decorrelate(rules []Rule, limit int) (*Decorrelated, error) {
	if limit <= 0 {
		limit = DefaultMaxEntries
	}
	d := &Decorrelated{limit: limit, rules: append([]Rule(nil), rules...), pieces: make([][]Entry, len(rules))}
	var cover []*Box
	var buf []Box
	for j := range d.rules {
		r := &d.rules[j]
		cover = cover[:0]
		for i := 0; i < j; i++ {
			if d.rules[i].Box.Overlaps(&r.Box) {
				cover = append(cover, &d.rules[i].Box)
			}
		}
		var ok bool
		buf, ok = remainder(buf[:0], &r.Box, cover, d.limit-d.total)
		if !ok || d.total+len(buf) > d.limit {
			return nil, fmt.Errorf("policy: decorrelate: rule %q (%d of %d) would bring the set past %d entries: %w", r.Name, j+1, len(rules), d.limit, ErrDecorrelationBound)
		}
		d.pieces[j] = d.newEntries(r, buf)
	}
	return d, nil
}

func (d *Decorrelated) newEntries(r *Rule, boxes []Box) []Entry {
	es := make([]Entry, len(boxes))
	for i := range boxes {
		d.nextID++
		es[i] = Entry{ID: d.nextID, Box: boxes[i], Rule: r.Name, Action: r.Action, SA: r.SA}
	}
	d.total += len(es)
	return es
}

// Len returns the number of entries.
func (d *Decorrelated) Len() int { return d.total }

// Limit returns the entry bound.
func (d *Decorrelated) Limit() int { return d.limit }

// Rules returns the ordered rules the set was built from; do not modify.
func (d *Decorrelated) Rules() []Rule { return d.rules }

// Entries returns all entries in rule order.
func (d *Decorrelated) Entries() []Entry {
	out := make([]Entry, 0, d.total)
	for _, ps := range d.pieces {
		out = append(out, ps...)
	}
	return out
}

// RuleEntries returns the entries of the named rule.
func (d *Decorrelated) RuleEntries(name string) []Entry {
	for i := range d.rules {
		if d.rules[i].Name == name {
			return d.pieces[i]
		}
	}
	return nil
}

// Lookup returns the verdict of the entry containing pkt by a linear scan;
// any hit is the answer, since entries are disjoint.
func (d *Decorrelated) Lookup(pkt *Packet) Verdict {
	for i, ps := range d.pieces {
		for j := range ps {
			if ps[j].Box.Contains(pkt) {
				return d.rules[i].Verdict(i)
			}
		}
	}
	return NoMatch
}

// Insert adds r, placed after every rule with a precedence ≤ r.Precedence,
// and returns the entries added and removed. Only entries of later rules that
// r overlaps are cut; no other entry changes. On ErrDecorrelationBound the
// set is unchanged.
func (d *Decorrelated) Insert(r Rule) (Delta, error) {
	for i := range d.rules {
		if d.rules[i].Name == r.Name {
			return Delta{}, fmt.Errorf("policy: insert %q: %w: name already used", r.Name, ErrBadRule)
		}
	}
	pos := sort.Search(len(d.rules), func(i int) bool { return d.rules[i].Precedence > r.Precedence })
	var cover []*Box
	for i := 0; i < pos; i++ {
		if d.rules[i].Box.Overlaps(&r.Box) {
			cover = append(cover, &d.rules[i].Box)
		}
	}
	own, ok := remainder(nil, &r.Box, cover, d.limit-d.total)
	if !ok {
		return Delta{}, fmt.Errorf("policy: insert %q: %w", r.Name, ErrDecorrelationBound)
	}
	// Cut the later rules' entries; stage the result so that failure leaves
	// the set untouched.
	type cut struct {
		rule   int
		keep   []Entry
		boxes  []Box
		remove []Entry
	}
	var cuts []cut
	grow := len(own)
	one := []*Box{&r.Box}
	for i := pos; i < len(d.rules); i++ {
		if !d.rules[i].Box.Overlaps(&r.Box) {
			continue
		}
		c := cut{rule: i}
		for _, e := range d.pieces[i] {
			if !e.Box.Overlaps(&r.Box) {
				c.keep = append(c.keep, e)
				continue
			}
			c.remove = append(c.remove, e)
			c.boxes, _ = remainder(c.boxes, &e.Box, one, 2*NumDims)
		}
		if len(c.remove) > 0 {
			grow += len(c.boxes) - len(c.remove)
			cuts = append(cuts, c)
		}
	}
	if d.total+grow > d.limit {
		return Delta{}, fmt.Errorf("policy: insert %q: %d entries would exceed %d: %w", r.Name, d.total+grow, d.limit, ErrDecorrelationBound)
	}
	var delta Delta
	for _, c := range cuts {
		d.total -= len(c.remove)
		added := d.newEntries(&d.rules[c.rule], c.boxes)
		d.pieces[c.rule] = append(c.keep, added...)
		delta.Removed = append(delta.Removed, c.remove...)
		delta.Added = append(delta.Added, added...)
	}
	d.rules = append(d.rules, Rule{})
	copy(d.rules[pos+1:], d.rules[pos:])
	d.rules[pos] = r
	d.pieces = append(d.pieces, nil)
	copy(d.pieces[pos+1:], d.pieces[pos:])
	d.pieces[pos] = d.newEntries(&d.rules[pos], own)
	delta.Added = append(delta.Added, d.pieces[pos]...)
	return delta, nil
}

// Remove deletes the named rule and hands the region it held to the later
// rules that overlap it, returning the entries removed and added. On
// ErrDecorrelationBound the set is unchanged.
func (d *Decorrelated) Remove(name string) (Delta, error) {
	pos := -1
	for i := range d.rules {
		if d.rules[i].Name == name {
			pos = i
			break
		}
	}
	if pos < 0 {
		return Delta{}, fmt.Errorf("policy: remove %q: %w", name, ErrNoRule)
	}
	gone := d.rules[pos].Box
	type grant struct {
		rule  int
		boxes []Box
	}
	var grants []grant
	grow := -len(d.pieces[pos])
	var cover []*Box
	for j := pos + 1; j < len(d.rules); j++ {
		x, ok := d.rules[j].Box.Intersect(&gone)
		if !ok {
			continue
		}
		// The freed region of rule j: its overlap with the removed rule,
		// minus every other rule before j.
		cover = cover[:0]
		for i := 0; i < j; i++ {
			if i != pos && d.rules[i].Box.Overlaps(&x) {
				cover = append(cover, &d.rules[i].Box)
			}
		}
		boxes, ok := remainder(nil, &x, cover, d.limit-d.total-grow)
		if !ok {
			return Delta{}, fmt.Errorf("policy: remove %q: %w", name, ErrDecorrelationBound)
		}
		if len(boxes) > 0 {
			grow += len(boxes)
			grants = append(grants, grant{j, boxes})
		}
	}
	if d.total+grow > d.limit {
		return Delta{}, fmt.Errorf("policy: remove %q: %d entries would exceed %d: %w", name, d.total+grow, d.limit, ErrDecorrelationBound)
	}
	delta := Delta{Removed: d.pieces[pos]}
	d.total -= len(d.pieces[pos])
	for _, g := range grants {
		added := d.newEntries(&d.rules[g.rule], g.boxes)
		d.pieces[g.rule] = append(d.pieces[g.rule], added...)
		delta.Added = append(delta.Added, added...)
	}
	d.rules = append(d.rules[:pos], d.rules[pos+1:]...)
	d.pieces = append(d.pieces[:pos], d.pieces[pos+1:]...)
	return delta, nil
}
