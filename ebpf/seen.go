package ebpf

import (
	"fmt"
	"math/bits"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapSeen memory-maps flow_seen. Userspace reads and clears it with atomic
// swaps, so a byte the program sets between the read and the clear is never
// lost, which a lookup followed by an update would allow.
func (p *Program) mapSeen() error {
	size := int(p.objs.FlowSeen.MaxEntries()) * int(unsafe.Sizeof(bpfEspySeen{}))
	page := os.Getpagesize()
	size = (size + page - 1) / page * page
	m, err := unix.Mmap(p.objs.FlowSeen.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("ebpf: map flow_seen: %w", err)
	}
	p.seen = m
	return nil
}

// SeenFlows appends to dst the decided flows that had a packet in the fast
// path since the previous call, and returns the extended slice. A flow may
// be missing if its verdict was replaced by an LRU eviction and its slot
// reused meanwhile, or reported once more after its verdict went.
//
// It reads a byte per counter slot (FlowSlots/8 words of 8 bytes), not the
// per-CPU counters, so it is cheap enough to call every few hundred
// milliseconds: the daemon uses it to keep flows the fast path handles alone
// fresh in its flow table. Flows whose bytes ActiveFlows read meanwhile are
// reported too.
func (p *Program) SeenFlows(dst []FlowKey) ([]FlowKey, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return dst, ErrClosed
	}
	p.drainSeenLocked()
	for w, v := range p.unseen {
		if v == 0 {
			continue
		}
		p.unseen[w] = 0
		for v != 0 {
			s := uint32(w*64 + bits.TrailingZeros64(v))
			v &= v - 1
			if p.slots.isUsed(s) {
				dst = append(dst, p.slotKeys[s])
			}
		}
	}
	return dst, nil
}

// drainSeenLocked reads and clears the seen bytes and marks their slots in
// p.active (for ActiveFlows) and p.unseen (for SeenFlows).
func (p *Program) drainSeenLocked() {
	n := len(p.slotKeys)
	for w := 0; w*8 < n && w*8+8 <= len(p.seen); w++ {
		word := (*uint64)(unsafe.Pointer(&p.seen[w*8]))
		if atomic.LoadUint64(word) == 0 {
			continue
		}
		v := atomic.SwapUint64(word, 0)
		// Bytes of the word in memory order: slot w*8+i is byte i.
		b := (*[8]byte)(unsafe.Pointer(&v))
		for i := range b {
			s := w*8 + i
			if b[i] == 0 || s == 0 || s >= n {
				continue
			}
			p.active[s/64] |= 1 << (s % 64)
			p.unseen[s/64] |= 1 << (s % 64)
		}
	}
}
