package ebpf

import "math/bits"

// slotTable hands out per-flow counter slots 1..n. A bitmap rather than a
// free list: its size is fixed, and it is rebuilt from the verdict map after
// a restart or when LRU eviction has silently dropped verdicts.
type slotTable struct {
	used []uint64 // bit i set: slot i taken; bit 0 is always set
	n    uint32
	next uint32 // where the next search starts
}

func (t *slotTable) init(n int) {
	t.n = uint32(n)
	t.used = make([]uint64, (n+1+63)/64)
	t.reset()
}

func (t *slotTable) reset() {
	clear(t.used)
	t.used[0] = 1
	t.next = 1
}

func (t *slotTable) mark(s uint32) {
	if s >= 1 && s <= t.n {
		t.used[s/64] |= 1 << (s % 64)
	}
}

func (t *slotTable) release(s uint32) {
	if s >= 1 && s <= t.n {
		t.used[s/64] &^= 1 << (s % 64)
	}
}

// alloc returns a free slot, or 0 if none is left.
func (t *slotTable) alloc() uint32 {
	words := uint32(len(t.used))
	start := t.next / 64
	for i := uint32(0); i <= words; i++ {
		w := (start + i) % words
		free := ^t.used[w]
		if w == start && i == 0 {
			free &^= (1 << (t.next % 64)) - 1 // skip below next on the first word
		}
		for free != 0 {
			s := w*64 + uint32(bits.TrailingZeros64(free))
			if s > t.n {
				break
			}
			t.used[w] |= 1 << (s % 64)
			t.next = s + 1
			return s
		}
	}
	return 0
}

func (t *slotTable) isUsed(s uint32) bool {
	return s >= 1 && s <= t.n && t.used[s/64]&(1<<(s%64)) != 0
}
