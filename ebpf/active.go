package ebpf

import (
	"fmt"
	"math/bits"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FlowActivity is the counters of one flow's slot, as ActiveFlows reads them.
type FlowActivity struct {
	Key  FlowKey
	Slot uint32
	// Gen changes whenever the slot is handed to a new verdict, whose
	// counters start from zero: a reader comparing with an earlier read
	// of the slot must then take the counters whole, not as a move.
	Gen  uint32
	Kind uint8 // the kind of the verdict holding the slot, VerdictNull…
	FlowStats
}

// ActiveFlows appends to dst the flows that had a packet in the fast path
// since the call before the previous one (with all, every flow holding a
// slot), with their counters, and returns the extended slice.
//
// NullFlows reads every verdict and every slot's counters: with 100,000 null
// flows that was 43% of the daemon's CPU at one call a second. ActiveFlows
// reads the seen bytes the program sets per slot (as SeenFlows, whose reads
// it shares) and the counters of those slots only, one system call each.
// A slot stays reported for one more call after its last packet, because
// the program counts a packet that fails the null parse just after it
// sets the seen byte: a read in between would miss that count until the
// flow's next packet.
//
// It is meant for one caller at a time; calls are serialised.
func (p *Program) ActiveFlows(dst []FlowActivity, all bool) ([]FlowActivity, error) {
	p.actMu.Lock()
	defer p.actMu.Unlock()
	start := len(dst)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return dst, ErrClosed
	}
	p.drainSeenLocked()
	for w := range p.active {
		cur := p.active[w]
		bitsSet := cur | p.activePrev[w]
		if all {
			bitsSet = p.slots.used[w]
		}
		p.activePrev[w], p.active[w] = cur, 0
		for bitsSet != 0 {
			s := uint32(w*64 + bits.TrailingZeros64(bitsSet))
			bitsSet &= bitsSet - 1
			if !p.slots.isUsed(s) {
				continue
			}
			dst = append(dst, FlowActivity{Key: p.slotKeys[s], Slot: s, Gen: p.slotGen[s], Kind: p.slotKind[s]})
		}
	}
	p.mu.Unlock()

	// The counters are read without p.mu, so that the sample loop's
	// verdict writes do not wait for them. A slot handed to another flow
	// meanwhile has its counters zeroed: the reader sees its counters go
	// back, or a new Gen at the next call.
	fd := p.objs.FlowStats.FD()
	for i := start; i < len(dst); i++ {
		a := &dst[i]
		p.actKey = a.Slot
		if err := lookupPerCPU(fd, &p.actKey, p.actBuf); err != nil {
			return dst[:start], fmt.Errorf("ebpf: counters of slot %d: %w", a.Slot, err)
		}
		for _, c := range p.actBuf {
			a.Packets += c.Packets
			a.Bytes += c.Bytes
			a.Unparsed += c.Unparsed
		}
	}
	return dst, nil
}

// mapElemAttr is the BPF_MAP_*_ELEM part of union bpf_attr.
type mapElemAttr struct {
	mapFD, _   uint32
	key, value uint64
	flags      uint64
}

const bpfMapLookupElem = 1 // BPF_MAP_LOOKUP_ELEM

// lookupPerCPU reads the per-CPU counters of the slot at key into per (one
// value per possible CPU). key and per are on the heap: the kernel gets
// their addresses inside attr, where a goroutine stack move would not
// update them. It makes the system call itself, as zeroSlots does:
// cilium/ebpf's per-CPU lookup allocates and unmarshals through
// reflection, which would cost more than the system call.
func lookupPerCPU(fd int, key *uint32, per []bpfEspyFlowStats) error {
	attr := mapElemAttr{
		mapFD: uint32(fd),
		key:   uint64(uintptr(unsafe.Pointer(key))),
		value: uint64(uintptr(unsafe.Pointer(&per[0]))),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, bpfMapLookupElem, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(key)
	runtime.KeepAlive(per)
	if errno != 0 {
		return errno
	}
	return nil
}
