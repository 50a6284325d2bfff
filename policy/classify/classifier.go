package classify

import (
	"fmt"
	"math/bits"
	"slices"
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
	f        *prefilter
	disjoint bool
	// bulk defers the prefilter to finish, for a classifier built in one go.
	bulk  bool
	limit int
	where map[uint64]whereItem
}

type whereItem struct {
	tb  *table
	box policy.Box
}

// New returns an empty classifier. When disjoint is true the caller promises
// that no two items overlap, and lookups stop at the first hit.
func New(disjoint bool) *Classifier {
	return &Classifier{disjoint: disjoint, limit: DefaultCollisionLimit, where: map[uint64]whereItem{}, f: new(prefilter)}
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
	x := newItem(&it)
	if err := best.insert(x, it.ID, &it.Box); err != nil {
		if best.n == 0 {
			c.tables = c.tables[:len(c.tables)-1]
		}
		return fmt.Errorf("classify: insert item %d: %w", it.ID, err)
	}
	c.where[it.ID] = whereItem{best, it.Box}
	before := c.tables
	if !c.bulk {
		before = slices.Clone(c.tables)
	}
	c.reorder()
	if c.bulk {
		return nil
	}
	if !slices.Equal(before, c.tables) {
		c.f.rebuild(c.tables)
	} else if i := slices.Index(c.tables, best); i < filterTables {
		c.f.add(&x, 1<<i)
	}
	return nil
}

// finish ends a bulk build: it builds the prefilter.
func (c *Classifier) finish() {
	c.bulk = false
	for _, tb := range c.tables {
		if tb.dead > 0 {
			tb.compact()
		}
	}
	c.f.rebuild(c.tables)
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
	// Rebuilt rather than patched: the deleted item's bits may be the
	// only ones in their slots, and the table order may have changed.
	if !c.bulk {
		c.f.rebuild(c.tables)
	}
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
	v4 := isV4(p)
	cand := c.f.candidates(p)
	tables := c.tables
	rest := tables[min(len(tables), filterTables):]
	if c.disjoint {
		for ; cand != 0; cand &= cand - 1 {
			tb := tables[bits.TrailingZeros32(cand)]
			if j := tb.lookup(p, k.maskedHash(&tb.mask), ^uint32(0), v4); j >= 0 {
				return tb.items[j].value, true
			}
		}
		for _, tb := range rest {
			if j := tb.lookup(p, k.maskedHash(&tb.mask), ^uint32(0), v4); j >= 0 {
				return tb.items[j].value, true
			}
		}
		return 0, false
	}
	var best *table
	bj := 0
	bound := ^uint32(0)
	for ; cand != 0; cand &= cand - 1 {
		tb := tables[bits.TrailingZeros32(cand)]
		if tb.minPrio >= bound {
			break
		}
		if j := tb.lookup(p, k.maskedHash(&tb.mask), bound, v4); j >= 0 {
			best, bj, bound = tb, j, tb.items[j].prio
		}
	}
	for _, tb := range rest {
		if tb.minPrio >= bound {
			break
		}
		if j := tb.lookup(p, k.maskedHash(&tb.mask), bound, v4); j >= 0 {
			best, bj, bound = tb, j, tb.items[j].prio
		}
	}
	if best == nil {
		return 0, false
	}
	return best.items[bj].value, true
}

// probeCost and itemCost weigh a table probe against an item's range check
// in cost, as fitted to ClassBench lookups (about 29 ns a probe, 4 ns an
// item on the 10k sets).
const probeCost, itemCost = 7, 1

// cost returns the work an ordered lookup of p does: probes and item
// checks, weighted. It follows Lookup step by step.
func (c *Classifier) cost(p *policy.Packet) int {
	probes, items := c.work(p)
	return probes*probeCost + items*itemCost
}

// work returns the probes and item checks an ordered lookup of p does,
// following Lookup step by step.
func (c *Classifier) work(p *policy.Packet) (probes, items int) {
	k := packetKey(p)
	bound := ^uint32(0)
	cand := c.f.candidates(p)
	for i, tb := range c.tables {
		if tb.minPrio >= bound {
			break
		}
		if i < filterTables && cand&(1<<i) == 0 {
			continue
		}
		if tb.packed && !isV4(p) {
			continue
		}
		probes++
		c, ok := tb.find(k.maskedHash(&tb.mask))
		if !ok {
			continue
		}
		start, m := cellBucket(tb.index[c])
		for i := start; i < start+m; i++ {
			x := &tb.items[i]
			if x.prio >= bound {
				break
			}
			items++
			if x.contains(p) {
				bound = x.prio
				break
			}
		}
	}
	return probes, items
}
