package classify

import "github.com/espy-dpi/espy/policy"

// Cache is the exact-match flow cache RFC 4301 section 4.4.1.1 places in
// front of the SPD: a direct-mapped table of recent packets' verdicts. It is
// invalidated wholesale when its Set changes. A Cache is not safe for
// concurrent use; give each worker its own.
type Cache struct {
	set   *Set
	slots []cacheSlot
	mask  uint64
	// Hits and Misses count lookups since creation.
	Hits, Misses uint64
}

// cacheSlot is kept small (48 bytes) so that a useful number of flows stays
// in the CPU caches: it holds the verdict's index, not the verdict.
type cacheSlot struct {
	pkt   policy.Packet
	gen   uint32
	value int32 // index into Set.verdicts; -1: no rule matched
}

// NewCache returns a cache of at least size slots (rounded up to a power of
// two) in front of s.
func NewCache(s *Set, size int) *Cache {
	n := 1
	for n < size {
		n <<= 1
	}
	return &Cache{set: s, slots: make([]cacheSlot, n), mask: uint64(n - 1)}
}

// Lookup returns the verdict for p from the cache or, on a miss, from the
// set. It does not allocate.
func (c *Cache) Lookup(p *policy.Packet) policy.Verdict {
	k := packetKey(p)
	sl := &c.slots[k.hash()&c.mask]
	// Generation 0 marks an empty slot; the set's generations start at 1.
	if sl.gen == c.set.gen && sl.pkt == *p {
		c.Hits++
		return c.set.verdict(sl.value)
	}
	c.Misses++
	v, ok := c.set.c.Lookup(p)
	if !ok {
		v = -1
	}
	*sl = cacheSlot{pkt: *p, gen: c.set.gen, value: v}
	return c.set.verdict(v)
}
