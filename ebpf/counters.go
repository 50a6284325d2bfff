package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// FlowStats are a flow's counters summed over CPUs.
type FlowStats struct {
	Packets uint64
	Bytes   uint64 // whole frames, Ethernet header included
	// Unparsed counts the packets of a flow decided null that failed the
	// null parse in XDP (exit reasons ExitNullUnparsed and
	// ExitWESPMismatch): the evidence of inline revocation.
	Unparsed uint64
}

// ExitCounters returns the exit-reason counters summed over CPUs.
func (p *Program) ExitCounters() (ExitCounts, error) {
	var out ExitCounts
	per := make([]uint64, p.ncpu)
	for r := range NumExitReasons {
		if err := p.objs.ExitCounters.Lookup(uint32(r), per); err != nil {
			return out, fmt.Errorf("ebpf: exit counter %v: %w", ExitReason(r), err)
		}
		for _, c := range per {
			out[r] += c
		}
	}
	return out, nil
}

// FlowCounters returns the counters of a flow with a verdict, or an error
// wrapping ErrNotFound.
func (p *Program) FlowCounters(k FlowKey) (FlowStats, error) {
	v, err := p.Verdict(k)
	if err != nil {
		return FlowStats{}, err
	}
	return p.slotStats(v.Slot, make([]bpfEspyFlowStats, p.ncpu))
}

func (p *Program) slotStats(slot uint32, per []bpfEspyFlowStats) (FlowStats, error) {
	var s FlowStats
	if slot == 0 {
		return s, nil
	}
	if err := p.objs.FlowStats.Lookup(slot, per); err != nil {
		return s, fmt.Errorf("ebpf: counters of slot %d: %w", slot, err)
	}
	for _, c := range per {
		s.Packets += c.Packets
		s.Bytes += c.Bytes
		s.Unparsed += c.Unparsed
	}
	return s, nil
}

// Snapshot holds the counters of every flow with a verdict at one sweep.
type Snapshot map[FlowKey]FlowStats

// IdleFlows compares the flows' counters with the previous sweep's snapshot
// and returns the flows whose packet count did not move, together with the
// snapshot to pass next time. A flow not in prev is never idle, so the first
// sweep (prev nil) only records. Expiry thus needs no clock in XDP: call it
// every idle timeout and delete what it returns. It reads the verdict map
// and the counters with batch lookups (eachVerdict, allSlotStats).
func (p *Program) IdleFlows(prev Snapshot) (idle []FlowKey, next Snapshot, err error) {
	stats, err := p.allSlotStats()
	if err != nil {
		return nil, nil, err
	}
	next = make(Snapshot, len(prev))
	err = p.eachVerdict(func(k *FlowKey, v *Verdict) {
		var s FlowStats
		if int(v.Slot) < len(stats) {
			s = stats[v.Slot]
		}
		next[*k] = s
		if old, ok := prev[*k]; ok && old.Packets == s.Packets {
			idle = append(idle, *k)
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ebpf: read verdicts: %w", err)
	}
	return idle, next, nil
}

// allSlotStats reads the whole counter array in batches, one syscall per
// batch instead of one per flow.
func (p *Program) allSlotStats() ([]FlowStats, error) {
	n := int(p.objs.FlowStats.MaxEntries())
	out := make([]FlowStats, n)
	const batch = 1024
	keys := make([]uint32, batch)
	vals := make([]bpfEspyFlowStats, batch*p.ncpu)
	var cursor ebpf.MapBatchCursor
	for {
		got, err := p.objs.FlowStats.BatchLookup(&cursor, keys, vals, nil)
		for i := range got {
			var s FlowStats
			for c := range p.ncpu {
				s.Packets += vals[i*p.ncpu+c].Packets
				s.Bytes += vals[i*p.ncpu+c].Bytes
				s.Unparsed += vals[i*p.ncpu+c].Unparsed
			}
			if int(keys[i]) < n {
				out[keys[i]] = s
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("ebpf: read flow counters: %w", err)
		}
	}
}

// NullFlows returns the counters of every flow whose verdict is null: what
// inline revocation watches once a second. Like IdleFlows it reads the
// verdict map in batches (a few syscalls per thousand flows instead of two
// per flow), and a batch walk is not restarted by LRU evictions.
func (p *Program) NullFlows() (Snapshot, error) {
	stats, err := p.allSlotStats()
	if err != nil {
		return nil, err
	}
	out := make(Snapshot)
	err = p.eachVerdict(func(k *FlowKey, v *Verdict) {
		if v.Kind == VerdictNull && int(v.Slot) < len(stats) {
			out[*k] = stats[v.Slot]
		}
	})
	if err != nil {
		return nil, fmt.Errorf("ebpf: read verdicts: %w", err)
	}
	return out, nil
}
