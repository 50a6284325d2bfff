package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// SetVerdict stores the verdict for a flow and clears its pending sample
// count. It keeps the flow's counter slot if the flow had one, else assigns
// a free one with zeroed counters; v.Slot is ignored.
func (p *Program) SetVerdict(k FlowKey, v Verdict) error {
	if v.Kind != VerdictNull && v.Kind != VerdictEncrypted && v.Kind != VerdictUnknown {
		return fmt.Errorf("ebpf: set verdict %v: unknown kind %d", k, v.Kind)
	}
	if Action(v.ActionEncrypted) > ActionCount || v.Mode > ModeTransport {
		return fmt.Errorf("ebpf: set verdict %v: unknown action %d or mode %d", k, v.ActionEncrypted, v.Mode)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return p.setVerdictLocked(k, v)
}

// setVerdictLocked is SetVerdict with p.mu held.
func (p *Program) setVerdictLocked(k FlowKey, v Verdict) error {
	var old Verdict
	err := p.objs.Verdicts.Lookup(&k, &old)
	switch {
	case err == nil && old.Slot != 0:
		v.Slot = old.Slot
	case err == nil || errors.Is(err, ebpf.ErrKeyNotExist):
		if v.Slot, err = p.allocSlot(); err != nil {
			return fmt.Errorf("ebpf: set verdict %v: %w", k, err)
		}
	default:
		return fmt.Errorf("ebpf: set verdict %v: lookup: %w", k, err)
	}
	if err := p.objs.Verdicts.Put(&k, &v); err != nil {
		if old.Slot != v.Slot {
			p.slots.release(v.Slot)
		}
		return fmt.Errorf("ebpf: set verdict %v: %w", k, err)
	}
	p.slotKeys[v.Slot] = k
	p.slotKind[v.Slot] = v.Kind
	if err := p.objs.Pending.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ebpf: set verdict %v: clear pending: %w", k, err)
	}
	return nil
}

// Verdict returns the stored verdict of a flow, or an error wrapping
// ErrNotFound.
func (p *Program) Verdict(k FlowKey) (Verdict, error) {
	var v Verdict
	if err := p.objs.Verdicts.Lookup(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			err = ErrNotFound
		}
		return Verdict{}, fmt.Errorf("ebpf: verdict %v: %w", k, err)
	}
	return v, nil
}

// DeleteVerdict removes a flow's verdict and frees its counter slot; the
// flow is unknown again and will be sampled anew. A missing verdict yields
// an error wrapping ErrNotFound.
func (p *Program) DeleteVerdict(k FlowKey) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	var v Verdict
	if err := p.objs.Verdicts.LookupAndDelete(&k, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			err = ErrNotFound
		}
		return fmt.Errorf("ebpf: delete verdict %v: %w", k, err)
	}
	p.slots.release(v.Slot)
	if err := p.objs.Pending.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ebpf: delete verdict %v: clear pending: %w", k, err)
	}
	return nil
}

// ResetPending forgets how many samples a flow without verdict has sent, so
// the program samples it again.
func (p *Program) ResetPending(k FlowKey) error {
	if err := p.objs.Pending.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("ebpf: reset pending %v: %w", k, err)
	}
	return nil
}

// VerdictIter walks the verdict map. The kernel map may change during the
// walk; a flow may then be missed or seen twice.
type VerdictIter struct {
	m      *ebpf.Map
	cursor ebpf.MapBatchCursor
	keys   []FlowKey
	vals   []Verdict
	n, i   int  // entries in the buffers, the next one to return
	done   bool // the last batch has been read
	err    error
}

// verdictIterBatch is the number of verdicts a VerdictIter reads per
// system call.
const verdictIterBatch = 1024

// Verdicts returns an iterator over the stored verdicts:
//
//	it := p.Verdicts()
//	for it.Next() { use(it.Key(), it.Verdict()) }
//	if err := it.Err(); err != nil { … }
//
// It reads the map with batch lookups, verdictIterBatch entries per system
// call: a key-by-key walk costs two system calls per verdict, and LRU
// evictions during it restart it from the first key (a busy map could keep
// it from ending), where a batch walk goes on from its bucket.
func (p *Program) Verdicts() *VerdictIter {
	return &VerdictIter{m: p.objs.Verdicts}
}

// Next advances to the next verdict and reports whether there is one.
func (it *VerdictIter) Next() bool {
	if it.i+1 < it.n {
		it.i++
		return true
	}
	for !it.done && it.err == nil {
		if it.keys == nil {
			it.keys = make([]FlowKey, verdictIterBatch)
			it.vals = make([]Verdict, verdictIterBatch)
		}
		got, err := it.m.BatchLookup(&it.cursor, it.keys, it.vals, nil)
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			it.done = true
		case err != nil:
			it.err = err
			got = 0
		}
		if got > 0 {
			it.n, it.i = got, 0
			return true
		}
	}
	it.n, it.i = 0, 0
	return false
}

// Key returns the current flow; the zero key when Next has not returned true.
func (it *VerdictIter) Key() FlowKey {
	if it.i >= it.n {
		return FlowKey{}
	}
	return it.keys[it.i]
}

// Verdict returns the current verdict; the zero verdict when Next has not
// returned true.
func (it *VerdictIter) Verdict() Verdict {
	if it.i >= it.n {
		return Verdict{}
	}
	return it.vals[it.i]
}

// Err returns the error that ended the walk, if any.
func (it *VerdictIter) Err() error {
	if it.err != nil {
		return fmt.Errorf("ebpf: iterate verdicts: %w", it.err)
	}
	return nil
}

// allocSlotRaw returns a free slot without touching its counters. When the
// table is full it first reclaims the slots of verdicts the LRU map evicted.
func (p *Program) allocSlotRaw() (uint32, error) {
	s := p.slots.alloc()
	if s == 0 {
		if err := p.reconcileSlots(); err != nil {
			return 0, err
		}
		if s = p.slots.alloc(); s == 0 {
			return 0, ErrNoSlot
		}
	}
	p.slotGen[s]++
	return s, nil
}

// allocSlot returns a free slot with zeroed counters. When the table is
// full it first reclaims the slots of verdicts the LRU map evicted.
func (p *Program) allocSlot() (uint32, error) {
	s, err := p.allocSlotRaw()
	if err != nil {
		return 0, err
	}
	zero := make([]bpfEspyFlowStats, p.ncpu)
	if err := p.objs.FlowStats.Put(s, zero); err != nil {
		p.slots.release(s)
		return 0, fmt.Errorf("zero counters of slot %d: %w", s, err)
	}
	return s, nil
}

// reconcileSlots rebuilds the slot table from the verdicts in the map
// (eachVerdict: batch reads, so the sample loop, stalled behind p.mu, is not
// held for a key-by-key walk).
func (p *Program) reconcileSlots() error {
	p.slots.reset()
	err := p.eachVerdict(func(k *FlowKey, v *Verdict) {
		s := v.Slot
		p.slots.mark(s)
		if s != 0 && int(s) < len(p.slotKeys) {
			p.slotKeys[s] = *k
			p.slotKind[s] = v.Kind
		}
	})
	if err != nil {
		return fmt.Errorf("ebpf: rebuild slot table: %w", err)
	}
	return nil
}

// eachVerdict calls f for every entry of the verdict map, read with batch
// lookups: a key-by-key walk costs two system calls per verdict (a second
// for 262,144 verdicts on the development VM), and LRU evictions during
// the walk restart or abort it. f must not keep its pointers.
func (p *Program) eachVerdict(f func(*FlowKey, *Verdict)) error {
	const batch = 1024
	keys := make([]FlowKey, batch)
	vals := make([]Verdict, batch)
	var cursor ebpf.MapBatchCursor
	for {
		got, err := p.objs.Verdicts.BatchLookup(&cursor, keys, vals, nil)
		for i := range got {
			f(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
