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

type cacheSlot struct {
	pkt   policy.Packet
	gen   uint32
	valid bool
	v     policy.Verdict
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
	if sl.valid && sl.gen == c.set.gen && sl.pkt == *p {
		c.Hits++
		return sl.v
	}
	c.Misses++
	v := c.set.Lookup(p)
	*sl = cacheSlot{pkt: *p, gen: c.set.gen, valid: true, v: v}
	return v
}
