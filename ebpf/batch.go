package ebpf

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VerdictBatch collects verdicts for SetVerdicts. Its buffers are reused
// from one batch to the next, so a steady stream of batches does not
// allocate per verdict. The zero value is ready to use.
type VerdictBatch struct {
	Keys     []FlowKey
	Verdicts []Verdict

	slots []uint32
	zero  []byte
}

// Add appends one verdict.
func (b *VerdictBatch) Add(k FlowKey, v Verdict) {
	b.Keys = append(b.Keys, k)
	b.Verdicts = append(b.Verdicts, v)
}

// Len returns the number of verdicts collected.
func (b *VerdictBatch) Len() int { return len(b.Keys) }

// Reset empties the batch, keeping its buffers.
func (b *VerdictBatch) Reset() {
	b.Keys, b.Verdicts = b.Keys[:0], b.Verdicts[:0]
}

// SetVerdicts stores the verdicts of b, for flows that have none yet (just
// decided from their samples), and empties b. Each gets a free slot with
// zeroed counters, as with SetVerdict.
//
// SetVerdict costs four map syscalls per flow (look the old verdict up, zero
// the counters, write, clear the pending count): most of the userspace cost
// of a new flow. SetVerdicts writes a batch with two: one batch update
// zeroes the new slots in flow_stats, one writes the verdicts. It leaves
// the pending counts: the program does not read them while a verdict
// exists, the pending map's LRU reclaims them, and DeleteVerdict clears a
// flow's count when its verdict goes. (A batch delete would stop at the
// first flow without a count, one system call per such flow: under a flood
// the LRU has evicted many.) The kernel's batch update takes no
// BPF_NOEXIST, so the old verdict is not looked up: a flow that does have
// one gets a new slot and its counters restart; the old slot returns to
// the free pool when the slot table is next rebuilt. Use SetVerdict for
// flows that may have a verdict. An entry whose write fails is retried
// alone with SetVerdict's path; the first errors are returned after the
// rest of the batch was tried.
func (p *Program) SetVerdicts(b *VerdictBatch) error {
	defer b.Reset()
	n := len(b.Keys)
	if n == 0 {
		return nil
	}
	for i := range b.Verdicts {
		v := &b.Verdicts[i]
		if v.Kind > VerdictEncrypted || Action(v.ActionEncrypted) > ActionCount || v.Mode > ModeTransport {
			return fmt.Errorf("ebpf: set verdict %v: unknown kind %d, action %d or mode %d", b.Keys[i], v.Kind, v.ActionEncrypted, v.Mode)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	var errs []error
	b.slots = b.slots[:0]
	for i := range b.Verdicts {
		s, err := p.allocSlotRaw()
		if err != nil {
			// No slot for the rest: they are not written.
			for _, s := range b.slots {
				p.slots.release(s)
			}
			return fmt.Errorf("ebpf: set verdicts: %w", err)
		}
		b.slots = append(b.slots, s)
		b.Verdicts[i].Slot = s
	}
	if need := n * p.ncpu * int(unsafe.Sizeof(bpfEspyFlowStats{})); len(b.zero) < need {
		b.zero = make([]byte, need)
	}
	if err := zeroSlots(p.objs.FlowStats.FD(), b.slots, b.zero); err != nil {
		for _, s := range b.slots {
			p.slots.release(s)
		}
		return fmt.Errorf("ebpf: set verdicts: zero counters: %w", err)
	}
	for i := 0; i < n; {
		c, err := p.objs.Verdicts.BatchUpdate(b.Keys[i:], b.Verdicts[i:], nil)
		for j := i; j < i+c; j++ {
			p.slotKeys[b.slots[j]] = b.Keys[j]
			p.slotKind[b.slots[j]] = b.Verdicts[j].Kind
		}
		i += c
		if err == nil {
			break
		}
		if i >= n {
			errs = append(errs, fmt.Errorf("ebpf: set verdicts: %w", err))
			break
		}
		// Entry i was not written: SetVerdict's path tries it alone.
		p.slots.release(b.slots[i])
		if err := p.setVerdictLocked(b.Keys[i], b.Verdicts[i]); err != nil {
			errs = append(errs, err)
		}
		i++
	}
	return errors.Join(errs...)
}

// mapBatchAttr is the BPF_MAP_*_BATCH part of union bpf_attr.
type mapBatchAttr struct {
	inBatch, outBatch, keys, values uint64
	count, mapFD                    uint32
	elemFlags, flags                uint64
}

const bpfMapUpdateBatch = 26 // BPF_MAP_UPDATE_BATCH

// zeroSlots sets the per-CPU counters of slots to zero (zero holds at least
// len(slots) * CPUs values of zero bytes) with one BPF_MAP_UPDATE_BATCH.
// It makes the system call itself: cilium/ebpf's per-CPU batch update
// marshals every CPU's value of every key through reflection, which cost
// more than the system call.
func zeroSlots(fd int, slots []uint32, zero []byte) error {
	attr := mapBatchAttr{
		keys:   uint64(uintptr(unsafe.Pointer(&slots[0]))),
		values: uint64(uintptr(unsafe.Pointer(&zero[0]))),
		count:  uint32(len(slots)),
		mapFD:  uint32(fd),
	}
	_, _, errno := unix.Syscall(unix.SYS_BPF, bpfMapUpdateBatch, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(slots)
	runtime.KeepAlive(zero)
	if errno != 0 {
		return fmt.Errorf("batch update of %d slots: %w", len(slots), errno)
	}
	return nil
}
