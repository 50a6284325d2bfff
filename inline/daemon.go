package inline

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
	"github.com/espy-dpi/espy/policy/classify"
	"github.com/espy-dpi/espy/verdictlog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Interface is an interface the daemon attached to.
type Interface struct {
	Name  string
	Index int
	Mode  ebpf.AttachMode // the mode the kernel gave (driver or generic)
}

// Daemon runs the appliance.
type Daemon struct {
	cfg     *config.Config
	prog    *ebpf.Program
	cache   *flowcache.Cache
	out     *Output
	log     zerolog.Logger
	m       *metrics
	ifaces  []Interface
	reader  *ebpf.SampleReader
	dec     packet.Decoder
	pkt     packet.Packet
	batch   sampleBatch
	gen     uint32
	set     atomic.Pointer[classify.Set] // the SPD's Go classifier, for punted packets; swapped by ReloadPolicy
	idleTO  time.Duration
	sweepTO time.Duration
	closeMu sync.Mutex
	closed  bool
}

// Start loads the fast path with cfg, attaches it, installs the known SAs
// and inner rules, and returns the daemon ready to Run. reg receives the
// metrics; out receives verdict records.
func Start(cfg *config.Config, out *Output, log zerolog.Logger, reg prometheus.Registerer) (d *Daemon, err error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("inline: no interfaces configured")
	}
	d = &Daemon{cfg: cfg, out: out, log: log}
	d.idleTO = orDuration(cfg.Flows.IdleTimeout, 10*time.Minute)
	d.sweepTO = orDuration(cfg.Flows.SweepInterval, 10*time.Second)
	engine := heuristics.New(heuristics.Config{
		Threshold: cfg.Heuristics.Threshold, EncryptedAfter: cfg.Heuristics.EncryptedAfter, MaxPackets: cfg.Heuristics.MaxPackets,
	})
	d.cache, err = flowcache.New(engine, flowcache.Config{
		Capacity: cfg.Flows.Capacity, PendingCapacity: cfg.Flows.Pending,
		// The fast path holds at most this many decided flows: a flood
		// of new ones fills the table that far without growing it.
		Reserve:     orInt(cfg.Maps.Verdicts, ebpf.DefaultVerdictEntries),
		IdleTimeout: d.idleTO, PendingTimeout: time.Duration(cfg.Flows.PendingTimeout),
		OnEvent: d.onEvent,
	})
	if err != nil {
		return nil, fmt.Errorf("inline: flow table: %w", err)
	}
	d.prog, err = ebpf.Load(ebpfConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("inline: load XDP program: %w", err)
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	d.m = newMetrics(reg, d.prog)
	mode := ebpf.AttachAuto
	switch cfg.Attach {
	case "driver":
		mode = ebpf.AttachDriver
	case "generic":
		mode = ebpf.AttachGeneric
	}
	for _, name := range cfg.Interfaces {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return d, fmt.Errorf("inline: interface %s: %w", name, err)
		}
		got, err := d.prog.Attach(ifc.Index, mode)
		if err != nil {
			return d, fmt.Errorf("inline: attach XDP to %s: %w", name, err)
		}
		d.ifaces = append(d.ifaces, Interface{Name: name, Index: ifc.Index, Mode: got})
		log.Info().Str("interface", name).Str("mode", got.String()).Msg("XDP attached")
	}
	if len(d.ifaces) == 2 {
		a, b := d.ifaces[0].Index, d.ifaces[1].Index
		if err := d.prog.SetBridgePort(a, b); err != nil {
			return d, fmt.Errorf("inline: bridge %s to %s: %w", d.ifaces[0].Name, d.ifaces[1].Name, err)
		}
		if err := d.prog.SetBridgePort(b, a); err != nil {
			return d, fmt.Errorf("inline: bridge %s to %s: %w", d.ifaces[1].Name, d.ifaces[0].Name, err)
		}
	}
	for i := range cfg.InnerRules {
		r, _ := cfg.InnerRule(i) // validated at load
		k, err := ebpf.NewInnerKey(r.Proto, r.Src, r.Dst, r.SrcPort, r.DstPort)
		if err != nil {
			return d, fmt.Errorf("inline: inner rule %d: %w", i, err)
		}
		if err := d.prog.SetInnerRule(k, innerAction(r.Action), uint32(i+1)); err != nil {
			return d, fmt.Errorf("inline: inner rule %d: %w", i, err)
		}
	}
	if cfg.Policy.Kind != 0 {
		if err := d.loadPolicy(); err != nil {
			return d, err
		}
	}
	now := time.Now().UnixNano()
	for i := range cfg.KnownSAs {
		sa, _ := cfg.KnownSA(i)
		d.cache.Register(flowcache.NewKey(sa.Src, sa.Dst, sa.SPI), sa.Null, sa.ICV, sa.IV, now)
		k, err := ebpf.NewFlowKey(sa.Src, sa.Dst, sa.SPI, ebpf.EncapNone, 0, 0)
		if err != nil {
			return d, fmt.Errorf("inline: known SA %d: %w", i, err)
		}
		v := heuristics.Verdict{Class: heuristics.Encrypted}
		if sa.Null {
			v = heuristics.Verdict{Class: heuristics.Null, ICVLen: sa.ICV, IVLen: sa.IV}
		}
		if err := d.prog.SetVerdict(k, d.bpfVerdict(&v)); err != nil {
			return d, fmt.Errorf("inline: known SA %d: %w", i, err)
		}
	}
	d.reader, err = d.prog.NewSampleReader()
	if err != nil {
		return d, fmt.Errorf("inline: open sample reader: %w", err)
	}
	return d, nil
}

func orDuration(d config.Duration, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

func ebpfConfig(cfg *config.Config) ebpf.Config {
	c := ebpf.Config{
		VerdictEntries: cfg.Maps.Verdicts, PendingEntries: cfg.Maps.Pending, InnerRuleEntries: cfg.Maps.InnerRules,
		FlowSlots:   ebpf.DefaultFlowSlots(orInt(cfg.Maps.Verdicts, ebpf.DefaultVerdictEntries)),
		SampleCount: cfg.Sampling.Packets, SnapLen: cfg.Sampling.SnapLen,
		SampleRate: cfg.Sampling.Rate, SampleBurst: cfg.Sampling.Burst,
		FailClosed: cfg.Fail == "closed",
		Bridge:     len(cfg.Interfaces) == 2,
		PinPath:    cfg.PinPath,
	}
	switch cfg.Actions.Encrypted {
	case "drop":
		c.EncryptedAction = ebpf.ActionDrop
	case "count":
		c.EncryptedAction = ebpf.ActionCount
	}
	if cfg.Actions.InnerDefault != "" {
		c.InnerDefault = innerAction(cfg.Actions.InnerDefault)
	}
	return c
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func innerAction(a string) ebpf.Action {
	switch a {
	case "drop":
		return ebpf.ActionDrop
	case "count":
		return ebpf.ActionCount
	}
	return ebpf.ActionPass
}

// Interfaces returns the attached interfaces and their modes.
func (d *Daemon) Interfaces() []Interface { return d.ifaces }

// Program returns the loaded fast path.
func (d *Daemon) Program() *ebpf.Program { return d.prog }

// Cache returns the flow table.
func (d *Daemon) Cache() *flowcache.Cache { return d.cache }

// Run reads samples, sweeps idle flows and withdraws null verdicts whose
// packets stop parsing (revoke.go) until ctx is done.
func (d *Daemon) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { d.sweepLoop(ctx) })
	wg.Go(func() { d.revokeLoop(ctx) })
	wg.Go(func() { d.seenLoop(ctx) })
	err := d.sampleLoop(ctx)
	wg.Wait()
	return err
}

func (d *Daemon) bpfVerdict(v *heuristics.Verdict) ebpf.Verdict {
	d.gen++
	bv := ebpf.Verdict{IcvLen: v.ICVLen, IvLen: v.IVLen, Generation: d.gen}
	switch v.Class {
	case heuristics.Null:
		bv.Kind = ebpf.VerdictNull
	case heuristics.Encrypted:
		bv.Kind = ebpf.VerdictEncrypted
	}
	switch v.Mode {
	case heuristics.ModeTunnel:
		bv.Mode = ebpf.ModeTunnel
	case heuristics.ModeTransport:
		bv.Mode = ebpf.ModeTransport
	}
	return bv
}

// onEvent writes records and counts metrics. It runs inside the flow
// cache, with the flow's shard locked.
func (d *Daemon) onEvent(e flowcache.Event) {
	r := verdictlog.Record{Time: time.Unix(0, e.Time), Key: e.Key, Flow: &e.Flow, Reason: e.Reason, Evicted: e.Evicted}
	switch e.Type {
	case flowcache.EventDecided:
		r.Action = verdictlog.ActionVerdict
		v := &e.Flow.Verdict
		d.m.verdict(v.Class, v.Source).Inc()
		var in heuristics.Inner
		if (d.pkt.Kind == packet.KindESP || d.pkt.Kind == packet.KindWESP) && heuristics.Decapsulate(v, &d.pkt, &in) {
			r.Inner = &in
		}
	case flowcache.EventRevoked:
		r.Action = verdictlog.ActionRevoked
		d.m.revocations.WithLabelValues(e.Reason.String()).Inc()
	case flowcache.EventExpired:
		r.Action = verdictlog.ActionFlowEnd
	default:
		return
	}
	if d.out != nil {
		if err := d.out.Write(&r); err != nil {
			d.log.Error().Err(err).Msg("write verdict log")
		}
	}
}

// sweepLoop keeps the flow table's counters in step with the fast path's,
// publishes gauges, and expires flows idle for the idle timeout.
func (d *Daemon) sweepLoop(ctx context.Context) {
	tick := time.NewTicker(d.sweepTO)
	defer tick.Stop()
	var idleSnap ebpf.Snapshot
	lastIdle := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.sweep(&idleSnap, &lastIdle)
	}
}

func (d *Daemon) sweep(idleSnap *ebpf.Snapshot, lastIdle *time.Time) {
	now := time.Now()
	_, snap, err := d.prog.IdleFlows(nil)
	if err != nil {
		d.log.Warn().Err(err).Msg("read flow counters")
		return
	}
	type sums struct{ packets, bytes uint64 }
	byFlow := make(map[flowcache.Key]sums, len(snap))
	var pk, by [3]float64
	for k, st := range snap {
		fk := flowcache.NewKey(k.SrcAddr(), k.DstAddr(), k.Spi)
		s := byFlow[fk]
		s.packets += st.Packets
		s.bytes += st.Bytes
		byFlow[fk] = s
	}
	for fk, s := range byFlow {
		d.cache.SetCounters(fk, s.packets, s.bytes, now.UnixNano())
		if f, ok := d.cache.Lookup(fk); ok {
			pk[f.Verdict.Class] += float64(s.packets)
			by[f.Verdict.Class] += float64(s.bytes)
		}
	}
	for c := heuristics.Unknown; c <= heuristics.Encrypted; c++ {
		d.m.verdictPackets.WithLabelValues(c.String()).Set(pk[c])
		d.m.verdictBytes.WithLabelValues(c.String()).Set(by[c])
	}
	d.m.mapEntries.WithLabelValues("verdicts").Set(float64(len(snap)))
	d.m.mapEntries.WithLabelValues("verdicts_capacity").Set(float64(d.prog.Config().VerdictEntries))
	st := d.cache.Stats()
	d.m.flows.WithLabelValues("decided").Set(float64(st.Decided))
	d.m.flows.WithLabelValues("pending").Set(float64(st.Pending))

	if now.Sub(*lastIdle) < d.idleTO {
		return
	}
	*lastIdle = now
	idle, next, err := d.prog.IdleFlows(*idleSnap)
	if err != nil {
		d.log.Warn().Err(err).Msg("find idle flows")
		return
	}
	*idleSnap = next
	for _, k := range idle {
		if err := d.prog.DeleteVerdict(k); err != nil && !errors.Is(err, ebpf.ErrNotFound) {
			d.log.Warn().Err(err).Stringer("flow", k).Msg("expire verdict")
			continue
		}
		d.m.expired.Inc()
		fk := flowcache.NewKey(k.SrcAddr(), k.DstAddr(), k.Spi)
		if f, ok := d.cache.Remove(fk); ok {
			d.onEvent(flowcache.Event{Type: flowcache.EventExpired, Key: fk, Flow: f, Time: now.UnixNano()})
		}
	}
	d.cache.Sweep(now.UnixNano())
}

// Close stops reading samples and detaches the program; pinned maps stay,
// so a restart keeps every verdict.
func (d *Daemon) Close() error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.reader != nil {
		errs = append(errs, d.reader.Close())
	}
	if d.prog != nil {
		for _, ifc := range d.ifaces {
			if err := d.prog.Detach(ifc.Index); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: %w", ifc.Name, err))
			}
		}
		errs = append(errs, d.prog.Close())
	}
	return errors.Join(errs...)
}
