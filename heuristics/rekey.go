package heuristics

import (
	"encoding/binary"
	"sync/atomic"

	"github.com/espy-dpi/espy/packet"
)

// rekeyTable remembers inner flows of null flows, keyed by the outer peer
// pair, so that a new SPI between the same peers carrying the same inner
// flows (an IKE rekey) is decided at once. It is direct-mapped and
// lock-free: each slot is one atomic word holding a 48-bit tag and the
// candidate, so it never grows and concurrent writers can only overwrite.
type rekeyTable struct {
	slots []atomic.Uint64
	mask  uint64
}

func newRekeyTable(n int) *rekeyTable {
	size := 1
	for size < n {
		size <<= 1
	}
	return &rekeyTable{slots: make([]atomic.Uint64, size), mask: uint64(size - 1)}
}

func rekeyHash(p *packet.Packet, tuple uint32) uint64 {
	// Order the peers so both directions of an SA pair share entries.
	a, b := p.Src, p.Dst
	if b.Less(a) {
		a, b = b, a
	}
	a16, b16 := a.As16(), b.As16()
	// Word by word (a multiply-xorshift): the byte-wise FNV this replaces
	// was 5% of deciding a new flow in the daemon (CPU profile).
	const m = 0x9e3779b97f4a7c15
	h := (uint64(tuple) ^ 0x243f6a8885a308d3) * m
	h = (h ^ h>>32 ^ binary.LittleEndian.Uint64(a16[0:])) * m
	h = (h ^ h>>32 ^ binary.LittleEndian.Uint64(a16[8:])) * m
	h = (h ^ h>>32 ^ binary.LittleEndian.Uint64(b16[0:])) * m
	h = (h ^ h>>32 ^ binary.LittleEndian.Uint64(b16[8:])) * m
	h ^= h >> 29
	return h
}

func (t *rekeyTable) remember(p *packet.Packet, tuple uint32, c candidate) {
	h := rekeyHash(p, tuple)
	t.slots[h&t.mask].Store(h&^0xffff | uint64(c.iv)<<8 | uint64(c.icv))
}

func (t *rekeyTable) match(p *packet.Packet, tuple uint32, c candidate) bool {
	h := rekeyHash(p, tuple)
	v := t.slots[h&t.mask].Load()
	return v != 0 && v&^0xffff == h&^0xffff && uint8(v>>8) == c.iv && uint8(v) == c.icv
}
