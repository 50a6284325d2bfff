package classify

import "github.com/espy-dpi/espy/policy"

// item is one classified box with its exact ranges laid out for a fast
// containment test.
type item struct {
	srcLo, srcHi, dstLo, dstHi policy.U128
	lo, hi                     [5]uint32 // family, proto, sport, dport, label
	prio                       uint32
	value                      int32
	id                         uint64
}

func newItem(it *Item) item {
	b := &it.Box
	x := item{
		srcLo: b[policy.DimSrc].Lo, srcHi: b[policy.DimSrc].Hi,
		dstLo: b[policy.DimDst].Lo, dstHi: b[policy.DimDst].Hi,
		prio: it.Priority, value: it.Value, id: it.ID,
	}
	for i, d := range [5]int{policy.DimFamily, policy.DimProto, policy.DimSPort, policy.DimDPort, policy.DimLabel} {
		x.lo[i] = uint32(b[d].Lo.Lo)
		x.hi[i] = uint32(b[d].Hi.Lo)
	}
	return x
}

func (x *item) contains(p *policy.Packet) bool {
	return uint32(p.SPort)-x.lo[2] <= x.hi[2]-x.lo[2] &&
		uint32(p.DPort)-x.lo[3] <= x.hi[3]-x.lo[3] &&
		uint32(p.Proto)-x.lo[1] <= x.hi[1]-x.lo[1] &&
		!p.Src.Less(x.srcLo) && !x.srcHi.Less(p.Src) &&
		!p.Dst.Less(x.dstLo) && !x.dstHi.Less(p.Dst) &&
		uint32(p.Family)-x.lo[0] <= x.hi[0]-x.lo[0] &&
		p.Label-x.lo[4] <= x.hi[4]-x.lo[4]
}

// slot is one open-addressing cell: a masked key and the items under it,
// sorted by priority.
type slot struct {
	// hash identifies the bucket: two masked keys with one 64-bit hash share
	// a bucket, which is harmless because every item's exact ranges are
	// checked; the bucket limit still bounds the scan.
	hash uint64
	// first duplicates items[0] inline, so that the common case, a bucket
	// of one, is decided without chasing the items pointer to another
	// cache line.
	first item
	items []item
	used  bool
}

func (s *slot) sync() {
	if len(s.items) > 0 {
		s.first = s.items[0]
	}
}

// table is one tuple's hash table. tags mirrors slots with each used slot's
// hash (never zero), so a probe that misses, the common case, touches eight
// bytes rather than a whole slot.
type table struct {
	t       tuple
	mask    key
	tags    []uint64
	slots   []slot
	shift   uint // 64 - log2(len(slots))
	used    int  // occupied slots
	n       int  // items
	minPrio uint32
}

func newTable(t tuple) *table {
	tb := &table{t: t, mask: t.mask(), tags: make([]uint64, 8), slots: make([]slot, 8), shift: 61, minPrio: ^uint32(0)}
	return tb
}

// find returns the slot index holding masked key k, or the empty slot where
// it would go.
func (tb *table) find(h uint64) int {
	m := len(tb.tags) - 1
	t := tag(h)
	i := int(h >> tb.shift)
	for {
		if x := tb.tags[i]; x == 0 || x == t {
			return i
		}
		i = (i + 1) & m
	}
}

// tag is the hash as stored in tags: never zero, which marks a free slot.
func tag(h uint64) uint64 { return h | 1 }

// bucketLen returns how many items share the bucket a box would land in.
func (tb *table) bucketLen(b *policy.Box) int {
	k := boxKey(b)
	return len(tb.slots[tb.find(k.maskedHash(&tb.mask))].items)
}

func (tb *table) insert(x item, b *policy.Box) {
	if 2*(tb.used+1) > len(tb.slots) {
		tb.grow()
	}
	k := boxKey(b)
	h := k.maskedHash(&tb.mask)
	j := tb.find(h)
	s := &tb.slots[j]
	if !s.used {
		s.used, s.hash = true, tag(h)
		tb.tags[j] = tag(h)
		tb.used++
	}
	i := len(s.items)
	s.items = append(s.items, x)
	for i > 0 && s.items[i-1].prio > x.prio {
		s.items[i] = s.items[i-1]
		i--
	}
	s.items[i] = x
	s.sync()
	tb.n++
	if x.prio < tb.minPrio {
		tb.minPrio = x.prio
	}
}

func (tb *table) grow() {
	old := tb.slots
	tb.slots = make([]slot, 2*len(old))
	tb.tags = make([]uint64, 2*len(old))
	tb.shift--
	for i := range old {
		if old[i].used {
			h := old[i].hash
			j := tb.find(h)
			tb.slots[j] = old[i]
			tb.tags[j] = h
		}
	}
}

// remove deletes the item with the given id from the bucket of b.
func (tb *table) remove(id uint64, b *policy.Box) bool {
	k := boxKey(b)
	s := &tb.slots[tb.find(k.maskedHash(&tb.mask))]
	for i := range s.items {
		if s.items[i].id == id {
			s.items = append(s.items[:i], s.items[i+1:]...)
			s.sync()
			tb.n--
			// An emptied slot stays as a tombstone-free placeholder: it
			// keeps its key so probe chains stay intact.
			tb.recomputeMin()
			return true
		}
	}
	return false
}

func (tb *table) recomputeMin() {
	tb.minPrio = ^uint32(0)
	for i := range tb.slots {
		if s := &tb.slots[i]; len(s.items) > 0 && s.items[0].prio < tb.minPrio {
			tb.minPrio = s.items[0].prio
		}
	}
}

// lookup returns the best item (lowest priority value) below bound matching
// p, or nil.
func (tb *table) lookup(p *policy.Packet, k *key, bound uint32) *item {
	h := k.maskedHash(&tb.mask)
	tg := tag(h)
	tags := tb.tags
	m := len(tags) - 1
	i := int(h >> tb.shift)
	for {
		t := tags[i&m]
		if t == 0 {
			return nil
		}
		if t == tg {
			s := &tb.slots[i&m]
			if len(s.items) == 0 {
				return nil
			}
			if x := &s.first; x.prio >= bound {
				return nil
			} else if x.contains(p) {
				return x
			}
			for j := 1; j < len(s.items); j++ {
				x := &s.items[j]
				if x.prio >= bound {
					return nil
				}
				if x.contains(p) {
					return x
				}
			}
			return nil
		}
		i = (i + 1) & m
	}
}
