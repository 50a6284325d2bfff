package inline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
	"golang.org/x/sys/unix"
)

// maxBatch bounds the samples handled between two verdict writes: large
// enough to amortise the write's syscalls, small enough that the first
// flow of a batch does not wait long for its verdict (a sample costs a few
// microseconds here).
const maxBatch = 256

// sampleBatch is what the sample loop has decided but not yet written: the
// new flows' verdicts, written together by ebpf.SetVerdicts, and their
// first packets' times for the latency histogram.
type sampleBatch struct {
	verdicts ebpf.VerdictBatch
	first    []int64
}

// sampleLoop reads samples until ctx is done. It blocks for the first sample
// of a batch, then takes whatever else the buffers hold without blocking (up
// to maxBatch), and writes the batch's verdicts to the fast path at once: a
// flood of new flows is handled in batches, a lone flow at once.
//
// The loop keeps its OS thread, so that the thread's CPU clock is the loop's
// CPU time: espy_sample_loop_cpu_seconds_total, which over espy_samples_total
// is the userspace cost of a sample whatever else the machine runs.
func (d *Daemon) sampleLoop(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var s ebpf.Sample
	past := time.Unix(1, 0)
	cpu0 := threadCPU()
	for {
		if ctx.Err() != nil {
			return nil
		}
		d.reader.SetDeadline(time.Now().Add(200 * time.Millisecond))
		err := d.reader.Read(&s)
		if d.out != nil {
			d.out.Hold()
		}
		// One clock reading per batch: the samples after the first were
		// in the ring when the batch began, and reading the clock (vDSO,
		// kvm-clock) was a tenth of the CPU time per new flow.
		now := time.Now().UnixNano()
		n := 0
		for err == nil {
			d.handle(&s, now)
			if n++; n == maxBatch {
				break
			}
			if n == 1 {
				d.reader.SetDeadline(past)
			}
			err = d.reader.Read(&s)
		}
		d.m.samples.Add(float64(n))
		d.flush()
		cpu := threadCPU()
		d.m.loopCPU.Add((cpu - cpu0).Seconds())
		cpu0 = cpu
		switch {
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, os.ErrClosed):
			return nil
		default:
			return fmt.Errorf("inline: read samples: %w", err)
		}
	}
}

// threadCPU returns the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// flush writes the batch's verdicts and verdict records.
func (d *Daemon) flush() {
	b := &d.batch
	if b.verdicts.Len() > 0 {
		if err := d.prog.SetVerdicts(&b.verdicts); err != nil {
			d.log.Error().Err(err).Msg("write verdicts to the fast path")
		}
		now := time.Now().UnixNano()
		for _, first := range b.first {
			d.m.latency.Observe(float64(now-first) / 1e9)
		}
		b.first = b.first[:0]
	}
	if d.out != nil {
		if err := d.out.Release(); err != nil {
			d.log.Error().Err(err).Msg("write verdict log")
		}
	}
}

// inBatch reports whether the batch holds a verdict for k.
func (b *sampleBatch) inBatch(k *ebpf.FlowKey) bool {
	for i := range b.verdicts.Keys {
		if b.verdicts.Keys[i] == *k {
			return true
		}
	}
	return false
}

// handle decides from one sample, taken from the ring at now (Unix
// nanoseconds). A new decision joins the batch; the rare rest (a verdict
// for a flow decided earlier, a withdrawal, a punt) is written at once.
func (d *Daemon) handle(s *ebpf.Sample, now int64) {
	p := &d.pkt
	if err := d.dec.Decode(packet.LinkTypeEthernet, s.Frame, p); err != nil || (p.Kind != packet.KindESP && p.Kind != packet.KindWESP) {
		d.m.undecodable.Inc()
		return
	}
	res := d.cache.Process(p, int(s.OrigLen), now)
	v := &res.Verdict
	switch {
	case res.Event == flowcache.EventRevoked && v.Class == heuristics.Unknown:
		// Withdrawn and not decided again: sample the flow anew.
		if err := d.prog.DeleteVerdict(s.Key); err != nil && !errors.Is(err, ebpf.ErrNotFound) {
			d.log.Warn().Err(err).Stringer("flow", s.Key).Msg("delete verdict")
		}
	case res.Event == flowcache.EventDecided:
		// A new flow: it has no verdict in the fast path (it was sampled
		// because it had none), so it can go in the batch.
		d.batch.verdicts.Add(s.Key, d.bpfVerdict(v))
		d.batch.first = append(d.batch.first, res.First)
	case v.Class == heuristics.Null || v.Class == heuristics.Encrypted:
		if d.batch.inBatch(&s.Key) {
			return // decided in this batch: a later sample of the same flow
		}
		// A flow decided earlier: a sample that was in flight when its
		// verdict was written, a flow that moved to another carrier key
		// (UDP, a new NAT port: one entry, one verdict for every key it
		// shows up under), a verdict the LRU map evicted, a withdrawn
		// verdict decided again, or a punt.
		if err := d.prog.SetVerdict(s.Key, d.bpfVerdict(v)); err != nil {
			d.log.Error().Err(err).Stringer("flow", s.Key).Msg("write verdict to the fast path")
			return
		}
		if v.Class == heuristics.Null && res.Event == flowcache.EventNone {
			// A sample of a decided null flow: the fast path punted it.
			d.punted(v, p)
		}
	}
}

// seenInterval is how often the daemon marks the flows the fast path
// handled as seen in the flow cache.
const seenInterval = 100 * time.Millisecond

// seenLoop tells the flow cache which decided flows the fast path counted
// packets of (flowcache.Touch): they count as seen again, and eviction
// takes flows never seen after their decision first, so a flood of new
// one-packet flows does not evict a live flow even when it turns the table
// over between two looks (the sweep sets counters too, but only every sweep
// interval, 10 s by default).
func (d *Daemon) seenLoop(ctx context.Context) {
	tick := time.NewTicker(seenInterval)
	defer tick.Stop()
	var keys []ebpf.FlowKey
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var err error
		if keys, err = d.prog.SeenFlows(keys[:0]); err != nil {
			if !errors.Is(err, ebpf.ErrClosed) {
				d.log.Warn().Err(err).Msg("read seen flows")
			}
			continue
		}
		now := time.Now().UnixNano()
		for i := range keys {
			k := &keys[i]
			d.cache.Touch(flowcache.NewKey(k.SrcAddr(), k.DstAddr(), k.Spi), now)
		}
	}
}
