package classify

import (
	"fmt"
	"sort"

	"github.com/espy-dpi/espy/policy"
)

// Item is one box to classify with its priority (lower wins) and the value a
// lookup returns for it.
type Item struct {
	ID       uint64
	Box      policy.Box
	Priority uint32
	Value    int32
}

// DefaultCollisionLimit is how many items may share one hash bucket before
// an insert opens a table with a longer tuple.
const DefaultCollisionLimit = 7

// wideCollisionLimit is the alternative limit Build tries: fewer, fuller
// tables. Which one is faster depends on the rules (see Build).
const wideCollisionLimit = 15

// Classifier is a set of tuple tables.
type Classifier struct {
	tables   []*table
	disjoint bool
	limit    int
	where    map[uint64]whereItem
}

type whereItem struct {
	tb  *table
	box policy.Box
}

// New returns an empty classifier. When disjoint is true the caller promises
// that no two items overlap, and lookups stop at the first hit.
func New(disjoint bool) *Classifier {
	return &Classifier{disjoint: disjoint, limit: DefaultCollisionLimit, where: map[uint64]whereItem{}}
}

// Len returns the number of items.
func (c *Classifier) Len() int { return len(c.where) }

// Tables returns the number of tuple tables.
func (c *Classifier) Tables() int { return len(c.tables) }

// Insert adds an item; IDs must be unique.
func (c *Classifier) Insert(it Item) error {
	if _, dup := c.where[it.ID]; dup {
		return fmt.Errorf("classify: insert: duplicate item id %d", it.ID)
	}
	nat := natural(&it.Box)
	var best *table
	for _, tb := range c.tables {
		if !tb.t.within(nat) || (best != nil && tb.t.bits() <= best.t.bits()) {
			continue
		}
		if tb.bucketLen(&it.Box) >= c.limit {
			continue
		}
		best = tb
	}
	if best == nil {
		best = newTable(relax(nat))
		if best.bucketLen(&it.Box) >= c.limit {
			best = newTable(nat)
		}
		c.tables = append(c.tables, best)
	}
	best.insert(newItem(&it), &it.Box)
	c.where[it.ID] = whereItem{best, it.Box}
	c.reorder()
	return nil
}

// Delete removes the item with the given ID and reports whether it existed.
func (c *Classifier) Delete(id uint64) bool {
	w, ok := c.where[id]
	if !ok {
		return false
	}
	w.tb.remove(id, &w.box)
	delete(c.where, id)
	if w.tb.n == 0 {
		for i, tb := range c.tables {
			if tb == w.tb {
				c.tables = append(c.tables[:i], c.tables[i+1:]...)
				break
			}
		}
	}
	c.reorder()
	return true
}

// reorder sorts the tables for lookup: largest first for disjoint items,
// best precedence first otherwise.
func (c *Classifier) reorder() {
	if c.disjoint {
		sort.SliceStable(c.tables, func(i, j int) bool { return c.tables[i].n > c.tables[j].n })
		return
	}
	sort.SliceStable(c.tables, func(i, j int) bool { return c.tables[i].minPrio < c.tables[j].minPrio })
}

// Lookup returns the value of the best item containing p.
func (c *Classifier) Lookup(p *policy.Packet) (value int32, ok bool) {
	k := packetKey(p)
	if c.disjoint {
		for _, tb := range c.tables {
			if x := tb.lookup(p, &k, ^uint32(0)); x != nil {
				return x.value, true
			}
		}
		return 0, false
	}
	var best *item
	bound := ^uint32(0)
	for _, tb := range c.tables {
		if tb.minPrio >= bound {
			break
		}
		if x := tb.lookup(p, &k, bound); x != nil {
			best, bound = x, x.prio
		}
	}
	if best == nil {
		return 0, false
	}
	return best.value, true
}

// probeCost and itemCost weigh a table probe against an item's range check
// in cost, as fitted to ClassBench lookups (about 29 ns a probe, 4 ns an
// item on the 10k sets).
const probeCost, itemCost = 7, 1

// cost returns the work an ordered lookup of p does: probes and item
// checks, weighted. It follows Lookup step by step.
func (c *Classifier) cost(p *policy.Packet) int {
	k := packetKey(p)
	n := 0
	bound := ^uint32(0)
	for _, tb := range c.tables {
		if tb.minPrio >= bound {
			break
		}
		n += probeCost
		h := k.maskedHash(&tb.mask)
		_, j := tb.find(h)
		if j < 0 {
			continue
		}
		s := &tb.slots[j]
		for i := range s.items {
			x := &s.items[i]
			if x.prio >= bound {
				break
			}
			n += itemCost
			if x.contains(p) {
				bound = x.prio
				break
			}
		}
	}
	return n
}
