package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// VerdictBatch collects verdicts for SetVerdicts. Its buffers are reused
// from one batch to the next, so a steady stream of batches does not
// allocate per verdict. The zero value is ready to use.
type VerdictBatch struct {
	Keys     []FlowKey
	Verdicts []Verdict

	slots []uint32
	zero  []bpfEspyFlowStats
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
// zeroed counters and its pending count is cleared, as with SetVerdict.
//
// SetVerdict costs four map syscalls per flow (look the old verdict up, zero
// the counters, write, clear the pending count): most of the userspace cost
// of a new flow. SetVerdicts writes a batch with three: one batch update
// zeroes the new slots in flow_stats, one writes the verdicts and one batch
// delete clears the pending counts. The kernel's batch update takes no
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
	if need := n * p.ncpu; cap(b.zero) < need {
		b.zero = make([]bpfEspyFlowStats, need)
	}
	if _, err := p.objs.FlowStats.BatchUpdate(b.slots, b.zero[:n*p.ncpu], nil); err != nil {
		for _, s := range b.slots {
			p.slots.release(s)
		}
		return fmt.Errorf("ebpf: set verdicts: zero counters: %w", err)
	}
	for i := 0; i < n; {
		c, err := p.objs.Verdicts.BatchUpdate(b.Keys[i:], b.Verdicts[i:], nil)
		for j := i; j < i+c; j++ {
			p.slotKeys[b.slots[j]] = b.Keys[j]
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
	for i := 0; i < n; {
		c, err := p.objs.Pending.BatchDelete(b.Keys[i:], nil)
		i += c
		if err == nil {
			break
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("ebpf: set verdicts: clear pending: %w", err))
			break
		}
		i++ // no pending count for entry i: skip it
	}
	return errors.Join(errs...)
}
