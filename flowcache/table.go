package flowcache

import (
	"encoding/binary"
	"math/bits"
	"time"
)

// entry is a decided flow with its key: 112 bytes.
type entry struct {
	key  Key
	flow Flow
}

// table holds a shard's decided flows in a dense array, found
// through an open-addressing index of 8-byte slots (hash and position) at
// most three-quarters full. That costs 112 + 10.7 bytes a flow at capacity,
// where a Go map of the same entries costs 140 to 280 (its slots hold key
// and value, and it doubles as it grows).
type table struct {
	entries []entry  // dense: the first len(entries) are live
	max     int      // capacity in flows
	index   []uint64 // 0: empty; else hash<<32 | position+1
	rng     uint64   // for sampling eviction victims
}

// indexSize is the number of index slots for capacity entries.
func indexSize(capacity int) int { return capacity*4/3 + 1 }

// init sets the table up for at most capacity flows. The dense array and
// the index grow by doubling up to what capacity needs, so a cache sized for
// a million flows costs memory, and cache and TLB misses, in proportion to
// the flows it holds, and a full one holds exactly its capacity. Room for
// reserve flows is allocated at once.
func (t *table) init(capacity, reserve int) {
	reserve = min(capacity, max(reserve, 64))
	t.entries = make([]entry, 0, reserve)
	t.max = capacity
	t.index = make([]uint64, min(indexSize(capacity), max(indexSize(reserve), 86)))
	if reserve > 64 {
		// Touch every page now: a fresh allocation is mapped on first
		// write, and a page fault per 36 flows inserted was most of the
		// cost of an insert into a reserved table (CPU profile of the
		// daemon under a flood of new flows).
		e := t.entries[:cap(t.entries)]
		for i := 0; i < len(e); i += 16 {
			e[i].flow.Packets = 0
		}
		for i := 0; i < len(t.index); i += 256 {
			t.index[i] = 0
		}
	}
	t.rng = 0x9e3779b97f4a7c15
}

// grow doubles the dense array and, past three-quarters load, the index
// (rehashing every entry), before an insert into a full array.
func (t *table) grow() {
	if len(t.entries) == cap(t.entries) {
		grown := make([]entry, len(t.entries), min(2*cap(t.entries), t.max))
		copy(grown, t.entries)
		t.entries = grown
	}
	if (len(t.entries)+1)*4 <= len(t.index)*3 || len(t.index) >= indexSize(t.max) {
		return
	}
	t.index = make([]uint64, min(2*len(t.index), indexSize(t.max)))
	for pos := range t.entries {
		h := t.entries[pos].key.hash()
		i := t.home(h)
		for t.index[i] != 0 {
			i = t.next(i)
		}
		t.index[i] = uint64(h)<<32 | uint64(pos+1)
	}
}

func (t *table) len() int { return len(t.entries) }

func (t *table) full() bool { return len(t.entries) >= t.max }

// home maps a hash to its first index slot (Lemire's multiply-shift, so the
// index need not be a power of two).
func (t *table) home(h uint32) int { return int(uint64(h) * uint64(len(t.index)) >> 32) }

func (t *table) next(i int) int {
	if i++; i == len(t.index) {
		return 0
	}
	return i
}

// slot returns the index slot of k, or of the empty slot where it would go.
func (t *table) slot(k *Key, h uint32) (int, bool) {
	for i := t.home(h); ; i = t.next(i) {
		s := t.index[i]
		if s == 0 {
			return i, false
		}
		if uint32(s>>32) == h && t.entries[uint32(s)-1].key == *k {
			return i, true
		}
	}
}

// get returns the flow of k, or nil.
func (t *table) get(k *Key, h uint32) *Flow {
	i, ok := t.slot(k, h)
	if !ok {
		return nil
	}
	return &t.entries[uint32(t.index[i])-1].flow
}

// put adds k, which must be absent, to a table that is not full.
func (t *table) put(k *Key, h uint32, f *Flow) *Flow {
	t.grow()
	i, _ := t.slot(k, h)
	t.entries = append(t.entries, entry{key: *k, flow: *f})
	n := len(t.entries)
	t.index[i] = uint64(h)<<32 | uint64(n)
	return &t.entries[n-1].flow
}

// remove deletes k if present.
func (t *table) remove(k *Key, h uint32) bool {
	i, ok := t.slot(k, h)
	if !ok {
		return false
	}
	t.removeAt(i)
	return true
}

// removeAt deletes the flow of index slot i: the slot is emptied by
// backward shifting (linear probing needs no tombstones that way), and the
// last entry moves into the freed position.
func (t *table) removeAt(i int) {
	pos := int(uint32(t.index[i])) - 1
	for j := t.next(i); t.index[j] != 0; j = t.next(j) {
		k := t.home(uint32(t.index[j] >> 32))
		// Move slot j back to i unless its home lies cyclically in (i, j].
		if (i < j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			t.index[i] = t.index[j]
			i = j
		}
	}
	t.index[i] = 0
	last := len(t.entries) - 1
	if pos != last {
		moved := &t.entries[last]
		h := moved.key.hash()
		for j := t.home(h); ; j = t.next(j) {
			if int(uint32(t.index[j])) == last+1 {
				t.index[j] = uint64(h)<<32 | uint64(pos+1)
				break
			}
		}
		t.entries[pos] = *moved
	}
	t.entries[last] = entry{}
	t.entries = t.entries[:last]
}

// removeEntry deletes the entry at dense position pos.
func (t *table) removeEntry(pos int) {
	e := &t.entries[pos]
	h := e.key.hash()
	for j := t.home(h); ; j = t.next(j) {
		if int(uint32(t.index[j])) == pos+1 {
			t.removeAt(j)
			return
		}
	}
}

// refWindow is how long a flow's sightings count for eviction after its
// latest one: a flow idle longer ranks as a one-packet flow again, so
// flows that were busy once do not hold the table until they expire.
const refWindow = int64(10 * time.Second)

// evictSamples is how many entries victim compares.
const evictSamples = 8

// rank orders flows for eviction at now, lowest first: by the binary
// magnitude of their sightings within refWindow, then by their latest
// packet. A one-packet flow thus goes before any flow the fast path or
// Process saw again, however fresh; flows of the same magnitude go least
// recently seen first. The magnitude, not the count, so that an attacker
// who sends a few packets per SPI only ties with flows that ran as long as
// its own (package doc, docs/inline-perf.md).
func rank(f *Flow, now int64) (level int, last int64) {
	if now-f.Last > refWindow {
		return 0, f.Last
	}
	return bits.Len8(f.refs), f.Last
}

// victim picks the lowest ranked (see rank) of a few entries sampled at
// random, or of all of them in a table no larger than the sample: an exact
// order would cost a list update per packet. It always picks one, so a
// table full of busy flows still makes room.
func (t *table) victim(now int64) int {
	best, bestLevel, bestLast := -1, 0, int64(0)
	n := len(t.entries)
	for s := 0; s < evictSamples; s++ {
		i := s
		if n > evictSamples {
			t.rng ^= t.rng << 13
			t.rng ^= t.rng >> 7
			t.rng ^= t.rng << 17
			i = int(uint64(uint32(t.rng)) * uint64(n) >> 32)
		} else if i >= n {
			break
		}
		level, last := rank(&t.entries[i].flow, now)
		if best < 0 || level < bestLevel || level == bestLevel && last < bestLast {
			best, bestLevel, bestLast = i, level, last
		}
	}
	return best
}

// hash mixes the key's words (a multiply-xorshift over its 40 bytes); the
// low bits pick the shard, the high bits the index slot.
func (k *Key) hash() uint32 {
	const m = 0x9e3779b97f4a7c15
	h := uint64(k.Family)<<32 | uint64(k.SPI)
	h = (h ^ h>>32) * m
	h = (h ^ binary.LittleEndian.Uint64(k.Src[0:])) * m
	h = (h ^ binary.LittleEndian.Uint64(k.Src[8:])) * m
	h = (h ^ binary.LittleEndian.Uint64(k.Dst[0:])) * m
	h = (h ^ binary.LittleEndian.Uint64(k.Dst[8:])) * m
	h ^= h >> 29
	return uint32(h) ^ uint32(h>>32)
}
