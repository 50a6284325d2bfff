package classify

import (
	"errors"
	"math/bits"

	"github.com/espy-dpi/espy/policy"
)

// item is one classified box, laid out for a branch-free containment test:
// every dimension is stored as its low bound and its width (high minus low),
// so a packet value v is inside when v-lo, computed with wrap-around, is at
// most the width. The small dimensions come first so that they, the
// priority and the source range share the item's first 64 bytes.
type item struct {
	prio                     uint32
	value                    int32
	sport, sportW            uint16
	dport, dportW            uint16
	label, labelW            uint32
	fam, famW, proto, protoW uint8
	final                    bool // see final.go
	src, srcW, dst, dstW     policy.U128
}

func newItem(it *Item) item {
	b := &it.Box
	w := func(d int) policy.U128 {
		lo, hi := b[d].Lo, b[d].Hi
		l, borrow := bits.Sub64(hi.Lo, lo.Lo, 0)
		h, _ := bits.Sub64(hi.Hi, lo.Hi, borrow)
		return policy.U128{Hi: h, Lo: l}
	}
	return item{
		prio: it.Priority, value: it.Value,
		sport: uint16(b[policy.DimSPort].Lo.Lo), sportW: uint16(w(policy.DimSPort).Lo),
		dport: uint16(b[policy.DimDPort].Lo.Lo), dportW: uint16(w(policy.DimDPort).Lo),
		label: uint32(b[policy.DimLabel].Lo.Lo), labelW: uint32(w(policy.DimLabel).Lo),
		fam: uint8(b[policy.DimFamily].Lo.Lo), famW: uint8(w(policy.DimFamily).Lo),
		proto: uint8(b[policy.DimProto].Lo.Lo), protoW: uint8(w(policy.DimProto).Lo),
		src: b[policy.DimSrc].Lo, srcW: w(policy.DimSrc),
		dst: b[policy.DimDst].Lo, dstW: w(policy.DimDst),
	}
}

// contains reports whether p is inside the item's box. It has one branch,
// at the end: the outcome of a range check is unpredictable, and a
// mispredicted branch per dimension cost more than the whole check.
func (x *item) contains(p *policy.Packet) bool {
	// Each term is width minus offset in 64-bit arithmetic: negative, so
	// with the top bit set, exactly when the value is outside the range.
	small := (uint64(x.sportW) - uint64(p.SPort-x.sport)) |
		(uint64(x.dportW) - uint64(p.DPort-x.dport)) |
		(uint64(x.protoW) - uint64(p.Proto-x.proto)) |
		(uint64(x.famW) - uint64(p.Family-x.fam)) |
		(uint64(x.labelW) - uint64(p.Label-x.label))
	s0, b := bits.Sub64(p.Src.Lo, x.src.Lo, 0)
	s1, _ := bits.Sub64(p.Src.Hi, x.src.Hi, b)
	_, bs := bits.Sub64(x.srcW.Lo, s0, 0)
	_, bs = bits.Sub64(x.srcW.Hi, s1, bs)
	d0, b := bits.Sub64(p.Dst.Lo, x.dst.Lo, 0)
	d1, _ := bits.Sub64(p.Dst.Hi, x.dst.Hi, b)
	_, bd := bits.Sub64(x.dstW.Lo, d0, 0)
	_, bd = bits.Sub64(x.dstW.Hi, d1, bd)
	return small>>63|bs|bd == 0
}

// citem is the compact form of an item whose family is IPv4 only (so its
// addresses lie in the low 32 bits, see policy.AddrU128) and whose label is
// any: 32 bytes, two to a cache
// line, against 96. Most rules of an IPv4 policy have this form, and the
// smaller items keep a 10k-rule table's buckets in the second-level cache.
type citem struct {
	prio          uint32
	src, srcW     uint32
	dst, dstW     uint32
	sport, sportW uint16
	dport, dportW uint16
	proto, protoW uint8
	final         bool
}

// compactItem returns x's compact form and whether x has one.
func compactItem(x *item) (citem, bool) {
	ok := x.fam == 4 && x.famW == 0 && x.label == 0 && x.labelW == ^uint32(0) &&
		x.src.Hi|x.srcW.Hi|x.dst.Hi|x.dstW.Hi == 0 &&
		x.src.Lo+x.srcW.Lo <= uint64(^uint32(0)) && x.dst.Lo+x.dstW.Lo <= uint64(^uint32(0))
	if !ok {
		return citem{}, false
	}
	return citem{
		prio: x.prio,
		src:  uint32(x.src.Lo), srcW: uint32(x.srcW.Lo),
		dst: uint32(x.dst.Lo), dstW: uint32(x.dstW.Lo),
		sport: x.sport, sportW: x.sportW, dport: x.dport, dportW: x.dportW,
		proto: x.proto, protoW: x.protoW, final: x.final,
	}, true
}

// isV4 reports whether p can match a compact item: an IPv4 packet whose
// addresses fit in 32 bits. The label needs no check, compact items take
// any.
func isV4(p *policy.Packet) bool {
	return p.Family == 4 && p.Src.Hi|p.Dst.Hi|(p.Src.Lo|p.Dst.Lo)>>32 == 0
}

// contains is item.contains for a packet that isV4.
func (x *citem) contains(p *policy.Packet) bool {
	out := (uint64(x.sportW) - uint64(p.SPort-x.sport)) |
		(uint64(x.dportW) - uint64(p.DPort-x.dport)) |
		(uint64(x.protoW) - uint64(p.Proto-x.proto)) |
		(uint64(x.srcW) - uint64(uint32(p.Src.Lo)-x.src)) |
		(uint64(x.dstW) - uint64(uint32(p.Dst.Lo)-x.dst))
	return out>>63 == 0
}

// Index cells. A cell is zero when free; otherwise it holds the low 32 bits
// of its bucket's hash (the tag) above cellUsed, the bucket's first item and
// its length. A bucket's items are contiguous in table.items, sorted by
// priority, so a probe touches the index cell and then the items in order,
// with no pointer in between.
const (
	cellUsed   = 1 << 31
	startShift = 8
	maxStart   = 1<<23 - 1
	lenMask    = 1<<startShift - 1
)

// maxBucket bounds a bucket's length: it must fit the cell's length field.
const maxBucket = lenMask

// errTableFull is returned when a table's item array would outgrow the
// cell's start field (8M items); it needs a policy far past any bound the
// decorrelation or the configuration allows.
var errTableFull = errors.New("classify: tuple table full (8M items)")

func cell(h uint64, start, n int) uint64 {
	return uint64(uint32(h))<<32 | cellUsed | uint64(start)<<startShift | uint64(n)
}

func cellBucket(e uint64) (start, n int) {
	return int(uint32(e)&^cellUsed) >> startShift, int(e & lenMask)
}

// table is one tuple's hash table: an open-addressing index of 8-byte
// cells over buckets stored contiguously in items. A probe that misses, the
// common case, touches only the index.
//
// A lookup compares only the 32-bit tag, so two buckets of one probe chain
// may share it; a lookup whose tag-matching bucket holds no item containing
// the packet therefore goes on along the chain. That is exact: every item
// containing a packet has the packet's masked key, so it lives in the
// bucket of that key's full hash, which is on the chain.
type table struct {
	mask  key
	index []uint64
	items []item
	// vals holds each item's value, position for position: a lookup
	// reads it once, for its answer, and it is small enough to be cached.
	vals []int32
	// small mirrors items in compact form, position for position, while
	// every item has one (packed is true); lookups then read only small.
	small   []citem
	packed  bool
	shift   uint // 64 - log2(len(index))
	minPrio uint32
	n       int // live items
	nb      int // used index cells
	t       tuple
	// Cold state for updates: the full hash of each index cell's bucket,
	// the id of each item, and the number of dead items in items (left
	// behind when a bucket moved to the end of items to grow).
	full []uint64
	ids  []uint64
	dead int
	// pending holds the bucket hash of each item added in bulk, until
	// layout.
	pending []uint64
}

func newTable(t tuple) *table {
	return &table{t: t, mask: tupleMask(t), index: make([]uint64, 8), full: make([]uint64, 8), shift: 61, minPrio: ^uint32(0), packed: true}
}

// find returns the index cell of the bucket with full hash h and whether
// it exists; when not, the cell is the free one where it would go.
func (tb *table) find(h uint64) (cell int, ok bool) {
	m := len(tb.index) - 1
	i := int(h >> tb.shift)
	for {
		e := tb.index[i]
		if e == 0 {
			return i, false
		}
		if uint32(e>>32) == uint32(h) && tb.full[i] == h {
			return i, true
		}
		i = (i + 1) & m
	}
}

// bucketLen returns how many items share the bucket with hash h.
func (tb *table) bucketLen(h uint64) int {
	if c, ok := tb.find(h); ok {
		_, n := cellBucket(tb.index[c])
		return n
	}
	return 0
}

// boxHash returns the hash of the bucket b belongs to in tb.
func (tb *table) boxHash(b *policy.Box) uint64 {
	k := boxKey(b)
	return k.maskedHash(&tb.mask)
}

// add appends x to the bucket with hash h without laying the bucket out:
// a bulk build only counts bucket lengths, and layout places every item
// once at the end. Until then the table cannot be looked up.
func (tb *table) add(x item, id uint64, h uint64) error {
	if 2*(tb.nb+1) > len(tb.index) {
		tb.grow()
	}
	c, ok := tb.find(h)
	n := 0
	if ok {
		_, n = cellBucket(tb.index[c])
	} else {
		tb.nb++
	}
	if n >= maxBucket {
		return errors.New("classify: tuple table bucket full")
	}
	if len(tb.items) >= maxStart {
		return errTableFull
	}
	tb.index[c] = cell(h, 0, n+1)
	tb.full[c] = h
	tb.items = append(tb.items, x)
	tb.ids = append(tb.ids, id)
	tb.vals = append(tb.vals, x.value)
	tb.pending = append(tb.pending, h)
	tb.n++
	if x.prio < tb.minPrio {
		tb.minPrio = x.prio
	}
	return nil
}

// layout places the items added in bulk: each bucket contiguous, in index
// order, sorted by priority, and the compact mirror when every item has a
// compact form.
func (tb *table) layout() {
	if tb.pending == nil {
		return
	}
	// Counting sort by index cell: starts from the bucket lengths.
	next := make([]int, len(tb.index))
	at := 0
	for c, e := range tb.index {
		if e == 0 {
			continue
		}
		_, n := cellBucket(e)
		tb.index[c] = cell(tb.full[c], at, n)
		next[c] = at
		at += n
	}
	items := make([]item, len(tb.items))
	ids := make([]uint64, len(tb.items))
	for i, h := range tb.pending {
		c, _ := tb.find(h)
		j := next[c]
		next[c]++
		// Insertion into the bucket's filled part keeps it sorted.
		start, _ := cellBucket(tb.index[c])
		for j > start && items[j-1].prio > tb.items[i].prio {
			items[j], ids[j] = items[j-1], ids[j-1]
			j--
		}
		items[j], ids[j] = tb.items[i], tb.ids[i]
	}
	tb.items, tb.ids, tb.pending, tb.dead = items, ids, nil, 0
	for i := range items {
		tb.vals[i] = items[i].value
	}
	tb.packed, tb.small = true, make([]citem, len(items))
	for i := range items {
		cx, ok := compactItem(&items[i])
		if !ok {
			tb.packed, tb.small = false, nil
			break
		}
		tb.small[i] = cx
	}
}

// insert adds x to the bucket of b. A bucket that grows is copied to the
// end of items with x in place, so buckets stay contiguous; the old copy is
// dead until the next compaction.
func (tb *table) insert(x item, id uint64, h uint64) error {
	if 2*(tb.nb+1) > len(tb.index) {
		tb.grow()
	}
	c, ok := tb.find(h)
	start, n := 0, 0
	if ok {
		start, n = cellBucket(tb.index[c])
	}
	if n >= maxBucket {
		return errors.New("classify: tuple table bucket full")
	}
	if len(tb.items)+n+1 > maxStart {
		tb.compact()
		if ok {
			start, _ = cellBucket(tb.index[c])
		}
		if len(tb.items)+n+1 > maxStart {
			return errTableFull
		}
	}
	cx, fits := compactItem(&x)
	if tb.packed && !fits {
		tb.packed, tb.small = false, nil
	}
	at := len(tb.items)
	i := 0
	for i < n && tb.items[start+i].prio <= x.prio {
		i++
	}
	tb.items = append(tb.items, tb.items[start:start+i]...)
	tb.ids = append(tb.ids, tb.ids[start:start+i]...)
	tb.items = append(tb.items, x)
	tb.ids = append(tb.ids, id)
	tb.items = append(tb.items, tb.items[start+i:start+n]...)
	tb.ids = append(tb.ids, tb.ids[start+i:start+n]...)
	tb.vals = append(tb.vals, tb.vals[start:start+i]...)
	tb.vals = append(tb.vals, x.value)
	tb.vals = append(tb.vals, tb.vals[start+i:start+n]...)
	if tb.packed {
		tb.small = append(tb.small, tb.small[start:start+i]...)
		tb.small = append(tb.small, cx)
		tb.small = append(tb.small, tb.small[start+i:start+n]...)
	}
	tb.dead += n
	if !ok {
		tb.nb++
	}
	tb.index[c] = cell(h, at, n+1)
	tb.full[c] = h
	tb.n++
	if x.prio < tb.minPrio {
		tb.minPrio = x.prio
	}
	if tb.dead > len(tb.items)/2 {
		tb.compact()
	}
	return nil
}

func (tb *table) grow() {
	old, oldFull := tb.index, tb.full
	tb.index = make([]uint64, 2*len(old))
	tb.full = make([]uint64, 2*len(old))
	tb.shift--
	for i, e := range old {
		if e == 0 {
			continue
		}
		c, _ := tb.find(oldFull[i])
		tb.index[c] = e
		tb.full[c] = oldFull[i]
	}
}

// compact drops the dead items, keeping each bucket contiguous.
func (tb *table) compact() {
	items := make([]item, 0, tb.n)
	ids := make([]uint64, 0, tb.n)
	var small []citem
	if tb.packed {
		small = make([]citem, 0, tb.n)
	}
	for c, e := range tb.index {
		if e == 0 {
			continue
		}
		start, n := cellBucket(e)
		tb.index[c] = cell(tb.full[c], len(items), n)
		items = append(items, tb.items[start:start+n]...)
		ids = append(ids, tb.ids[start:start+n]...)
		if tb.packed {
			small = append(small, tb.small[start:start+n]...)
		}
	}
	tb.items, tb.ids, tb.small, tb.dead = items, ids, small, 0
	tb.vals = make([]int32, len(items))
	for i := range items {
		tb.vals[i] = items[i].value
	}
}

// remove deletes the item with the given id from the bucket with hash h.
func (tb *table) remove(id uint64, h uint64) bool {
	c, ok := tb.find(h)
	if !ok {
		return false
	}
	start, n := cellBucket(tb.index[c])
	for i := start; i < start+n; i++ {
		if tb.ids[i] != id {
			continue
		}
		copy(tb.items[i:start+n], tb.items[i+1:start+n])
		copy(tb.ids[i:start+n], tb.ids[i+1:start+n])
		copy(tb.vals[i:start+n], tb.vals[i+1:start+n])
		if tb.packed {
			copy(tb.small[i:start+n], tb.small[i+1:start+n])
		}
		// An emptied bucket keeps its cell, with length 0, so that probe
		// chains through it stay intact.
		tb.index[c] = cell(tb.full[c], start, n-1)
		tb.n--
		tb.dead++
		tb.recomputeMin()
		if tb.dead > len(tb.items)/2 {
			tb.compact()
		}
		return true
	}
	return false
}

func (tb *table) recomputeMin() {
	tb.minPrio = ^uint32(0)
	for _, e := range tb.index {
		if start, n := cellBucket(e); e != 0 && n > 0 && tb.items[start].prio < tb.minPrio {
			tb.minPrio = tb.items[start].prio
		}
	}
}

// lookup returns the position in items of the best item (lowest priority
// value) below bound containing p, or -1, reading the wide items. h is the
// packet's key hashed under the table's mask. Classifier.Lookup has the
// compact form of this loop written out in place.
func (tb *table) lookup(p *policy.Packet, h uint64, bound uint32) int {
	index := tb.index
	m := len(index) - 1
	for i := int(h >> tb.shift); ; i = (i + 1) & m {
		e := index[i]
		if e == 0 {
			return -1
		}
		if uint32(e>>32) != uint32(h) {
			continue
		}
		start, n := cellBucket(e)
		bucket := tb.items[start : start+n : start+n]
		for j := range bucket {
			x := &bucket[j]
			if x.prio >= bound {
				break
			}
			if x.contains(p) {
				return start + j
			}
		}
	}
}

// lookupSmall is lookup over the compact items, for a packet that isV4.
func (tb *table) lookupSmall(p *policy.Packet, h uint64, bound uint32) int {
	index := tb.index
	m := len(index) - 1
	for i := int(h >> tb.shift); ; i = (i + 1) & m {
		e := index[i]
		if e == 0 {
			return -1
		}
		if uint32(e>>32) != uint32(h) {
			continue
		}
		start, n := cellBucket(e)
		bucket := tb.small[start : start+n : start+n]
		for j := range bucket {
			x := &bucket[j]
			if x.prio >= bound {
				break
			}
			if x.contains(p) {
				return start + j
			}
		}
	}
}

// eachLive calls fn for every live item.
func (tb *table) eachLive(fn func(*item)) {
	for _, e := range tb.index {
		if e == 0 {
			continue
		}
		start, n := cellBucket(e)
		for i := start; i < start+n; i++ {
			fn(&tb.items[i])
		}
	}
}
