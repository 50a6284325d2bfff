package classify

import "github.com/espy-dpi/espy/policy"

// item is one classified box with its exact ranges laid out for a fast
// containment test: the small dimensions first, at their own widths, so
// that a slot's inline item spans as few cache lines as possible.
type item struct {
	prio                         uint32
	value                        int32
	sportLo, sportHi             uint16
	dportLo, dportHi             uint16
	labelLo, labelHi             uint32
	famLo, famHi, protoLo, proHi uint8
	srcLo, srcHi, dstLo, dstHi   policy.U128
	id                           uint64
}

func newItem(it *Item) item {
	b := &it.Box
	return item{
		prio: it.Priority, value: it.Value, id: it.ID,
		sportLo: uint16(b[policy.DimSPort].Lo.Lo), sportHi: uint16(b[policy.DimSPort].Hi.Lo),
		dportLo: uint16(b[policy.DimDPort].Lo.Lo), dportHi: uint16(b[policy.DimDPort].Hi.Lo),
		labelLo: uint32(b[policy.DimLabel].Lo.Lo), labelHi: uint32(b[policy.DimLabel].Hi.Lo),
		famLo: uint8(b[policy.DimFamily].Lo.Lo), famHi: uint8(b[policy.DimFamily].Hi.Lo),
		protoLo: uint8(b[policy.DimProto].Lo.Lo), proHi: uint8(b[policy.DimProto].Hi.Lo),
		srcLo: b[policy.DimSrc].Lo, srcHi: b[policy.DimSrc].Hi,
		dstLo: b[policy.DimDst].Lo, dstHi: b[policy.DimDst].Hi,
	}
}

func (x *item) contains(p *policy.Packet) bool {
	return p.SPort-x.sportLo <= x.sportHi-x.sportLo &&
		p.DPort-x.dportLo <= x.dportHi-x.dportLo &&
		p.Proto-x.protoLo <= x.proHi-x.protoLo &&
		!p.Src.Less(x.srcLo) && !x.srcHi.Less(p.Src) &&
		!p.Dst.Less(x.dstLo) && !x.dstHi.Less(p.Dst) &&
		p.Family-x.famLo <= x.famHi-x.famLo &&
		p.Label-x.labelLo <= x.labelHi-x.labelLo
}

// slot is one bucket: a masked key's hash and the items under it, sorted
// by priority.
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
}

func (s *slot) sync() {
	if len(s.items) > 0 {
		s.first = s.items[0]
	}
}

// table is one tuple's hash table. The buckets are stored densely in slots;
// index is the open-addressing table over them, eight bytes a cell: the
// low 32 bits of the bucket's hash above its slot number plus one (zero
// marks a free cell). A probe that misses, the common case, touches only
// index, and the slots hold no empty cells.
type table struct {
	t       tuple
	mask    key
	index   []uint64
	slots   []slot
	shift   uint // 64 - log2(len(index))
	n       int  // items
	minPrio uint32
}

func newTable(t tuple) *table {
	return &table{t: t, mask: t.mask(), index: make([]uint64, 8), shift: 61, minPrio: ^uint32(0)}
}

// find returns the index cell of the bucket with hash h and the bucket's
// slot number, or the free cell where it would go and -1.
func (tb *table) find(h uint64) (cell, slot int) {
	m := len(tb.index) - 1
	i := int(h >> tb.shift)
	for {
		e := tb.index[i]
		if e == 0 {
			return i, -1
		}
		if uint32(e>>32) == uint32(h) && tb.slots[uint32(e)-1].hash == h {
			return i, int(uint32(e) - 1)
		}
		i = (i + 1) & m
	}
}

// bucketLen returns how many items share the bucket a box would land in.
func (tb *table) bucketLen(b *policy.Box) int {
	k := boxKey(b)
	if _, j := tb.find(k.maskedHash(&tb.mask)); j >= 0 {
		return len(tb.slots[j].items)
	}
	return 0
}

func (tb *table) insert(x item, b *policy.Box) {
	if 2*(len(tb.slots)+1) > len(tb.index) {
		tb.grow()
	}
	k := boxKey(b)
	h := k.maskedHash(&tb.mask)
	c, j := tb.find(h)
	if j < 0 {
		j = len(tb.slots)
		tb.slots = append(tb.slots, slot{hash: h})
		tb.index[c] = uint64(uint32(h))<<32 | uint64(j+1)
	}
	s := &tb.slots[j]
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
	tb.index = make([]uint64, 2*len(tb.index))
	tb.shift--
	for j := range tb.slots {
		h := tb.slots[j].hash
		c, _ := tb.find(h)
		tb.index[c] = uint64(uint32(h))<<32 | uint64(j+1)
	}
}

// remove deletes the item with the given id from the bucket of b.
func (tb *table) remove(id uint64, b *policy.Box) bool {
	k := boxKey(b)
	_, j := tb.find(k.maskedHash(&tb.mask))
	if j < 0 {
		return false
	}
	s := &tb.slots[j]
	for i := range s.items {
		if s.items[i].id == id {
			s.items = append(s.items[:i], s.items[i+1:]...)
			s.sync()
			tb.n--
			// An emptied bucket stays, empty: it keeps its index cell so
			// probe chains stay intact.
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
	index := tb.index
	m := len(index) - 1
	i := int(h >> tb.shift)
	for {
		e := index[i]
		if e == 0 {
			return nil
		}
		if uint32(e>>32) == uint32(h) {
			s := &tb.slots[uint32(e)-1]
			if s.hash == h {
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
		}
		i = (i + 1) & m
	}
}
