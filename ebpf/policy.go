package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/espy-dpi/espy/policy"
	pbpf "github.com/espy-dpi/espy/policy/bpf"
)

// The control word of the compiled SPD (espy_policy_ctl, policy_maps.h).
const (
	policyCtlSet1   = 0x1 // set 1 is active
	policyCtlLoaded = 0x2 // a compiled policy is published
	policyCtlPunt   = 0x4 // punt every lookup the exact stage does not answer
)

// PolicyStat indexes PolicyStats (enum espy_policy_stat).
type PolicyStat int

// Counters of the inner-policy lookup, per packet of a decided ESP-NULL flow.
const (
	PolicyExact    PolicyStat = iota // answered by an exact rule (SetInnerRule)
	PolicyHit                        // a compiled range matched
	PolicyMiss                       // no range matched: the policy's miss action
	PolicyPunt                       // sent to userspace: PUNT action, policy too large, or raced twice
	PolicyRetry                      // lookup repeated because a publication raced it
	PolicyDefault                    // no policy published: Config.InnerDefault
	PolicyCacheHit                   // answered by the SPD cache, no walk (Hit and Miss count walks)
	NumPolicyStats
)

// PolicyStats are the lookup counters, summed over CPUs.
type PolicyStats [NumPolicyStats]uint64

// PolicyState says what the fast path classifies inner packets with.
type PolicyState struct {
	Loaded     bool   // a compiled policy is published
	Punt       bool   // a too-large policy: the SPD stage punts every packet
	Set        int    // the map set (0 or 1) the fast path reads
	Generation uint32 // publications since Load
}

// policyMu serialises publications: each one writes the set that is not
// active, which only one writer at a time may own.
var policyMu sync.Mutex

type policySet struct {
	meta, tables, ranges, keys, bloom *ebpf.Map
}

func (p *Program) policySet(i uint64) policySet {
	if i == 0 {
		return policySet{p.objs.EspyPolicyMeta0, p.objs.EspyPolicyTables0, p.objs.EspyPolicyRanges0, p.objs.EspyPolicyKeys0, p.objs.EspyPolicyBloom0}
	}
	return policySet{p.objs.EspyPolicyMeta1, p.objs.EspyPolicyTables1, p.objs.EspyPolicyRanges1, p.objs.EspyPolicyKeys1, p.objs.EspyPolicyBloom1}
}

// Per-table Bloom filters over the masked keys (policy_maps.h).
const (
	bloomWords = 1024
	bloomBits  = bloomWords * 64
)

// bloomHash is espy_policy_bloom_hash in policy_maps.h; the table index is
// not hashed (each table has its own filter).
func bloomHash(k *pbpf.Key) uint64 {
	h := k.Meta ^ uint64(k.Label)<<7
	h ^= k.Src[0] * 0x9e3779b97f4a7c15
	h ^= k.Src[1] * 0xc2b2ae3d27d4eb4f
	h ^= k.Dst[0] * 0x165667b19e3779f9
	h ^= k.Dst[1] * 0xd6e8feb86659fd93
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h
}

func (p *Program) policyCtl() (uint64, error) {
	var ctl uint64
	if err := p.objs.EspyPolicyCtl.Lookup(uint32(0), &ctl); err != nil {
		return 0, fmt.Errorf("ebpf: read policy control: %w", err)
	}
	return ctl, nil
}

func (p *Program) checkOpen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return nil
}

// LoadPolicy publishes a compiled SPD to the fast path. Decided ESP-NULL
// flows then classify their inner 5-tuple with it, after the exact rules of
// SetInnerRule, which stay a first stage that overrides it. Actions map as
// allow, bypass, protect: pass; drop, discard: drop; log: count; punt: a
// sample to userspace and the fail mode; a miss takes c.Meta.MissAction,
// and a miss action of policy.ActionNone means Config.InnerDefault.
//
// Publication is atomic: the policy is written into the map set the fast
// path is not reading, then one write of the control word switches sets. A
// packet is classified wholly under the old policy or wholly under the new.
func (p *Program) LoadPolicy(c *pbpf.Compiled) error {
	if c == nil {
		return errors.New("ebpf: load policy: nil compiled policy")
	}
	if err := checkCompiled(c); err != nil {
		return err
	}
	policyMu.Lock()
	defer policyMu.Unlock()
	if err := p.checkOpen(); err != nil {
		return err
	}
	ctl, err := p.policyCtl()
	if err != nil {
		return err
	}
	next := 1 - ctl&policyCtlSet1
	if err := p.writePolicySet(p.policySet(next), c); err != nil {
		return err
	}
	return p.flipPolicy(ctl, next|policyCtlLoaded)
}

// PuntPolicy makes the SPD stage punt every packet it is asked about: the
// answer to a policy that does not fit the maps (pbpf.ErrTooLargeForBPF).
// Exact rules still apply first.
func (p *Program) PuntPolicy() error {
	return p.setPolicyState(policyCtlPunt)
}

// ClearPolicy withdraws the compiled SPD: the exact rules and
// Config.InnerDefault decide again, as before any LoadPolicy.
func (p *Program) ClearPolicy() error {
	return p.setPolicyState(0)
}

// PublishPolicy publishes the result of pbpf.CompileRules or
// CompileDecorrelated: the policy if it compiled, PuntPolicy if it was too
// large for the maps (the error is then reported as handled: nil), and
// any other compilation error is returned with nothing published, e.g.
//
//	err := prog.PublishPolicy(pbpf.CompileRules(rules, pbpf.Options{}))
func (p *Program) PublishPolicy(c *pbpf.Compiled, compileErr error) error {
	switch {
	case compileErr == nil:
		return p.LoadPolicy(c)
	case errors.Is(compileErr, pbpf.ErrTooLargeForBPF):
		return p.PuntPolicy()
	}
	return fmt.Errorf("ebpf: policy not published: %w", compileErr)
}

func (p *Program) setPolicyState(bits uint64) error {
	policyMu.Lock()
	defer policyMu.Unlock()
	if err := p.checkOpen(); err != nil {
		return err
	}
	ctl, err := p.policyCtl()
	if err != nil {
		return err
	}
	// The active set stays: nothing is written, the bit is only kept.
	return p.flipPolicy(ctl, ctl&policyCtlSet1|bits)
}

// flipPolicy writes the control word with one 8-byte store: the new state
// and the generation incremented, which is what fast-path lookups racing
// the switch compare.
func (p *Program) flipPolicy(old, bits uint64) error {
	gen := old>>32 + 1
	ctl := gen<<32 | bits
	if err := p.objs.EspyPolicyCtl.Put(uint32(0), ctl); err != nil {
		return fmt.Errorf("ebpf: publish policy: %w", err)
	}
	return nil
}

// PolicyState reports what the fast path classifies with.
func (p *Program) PolicyState() (PolicyState, error) {
	ctl, err := p.policyCtl()
	if err != nil {
		return PolicyState{}, err
	}
	return PolicyState{
		Loaded: ctl&policyCtlLoaded != 0, Punt: ctl&policyCtlPunt != 0,
		Set: int(ctl & policyCtlSet1), Generation: uint32(ctl >> 32),
	}, nil
}

// PolicyStats returns the inner-policy lookup counters, summed over CPUs.
func (p *Program) PolicyStats() (PolicyStats, error) {
	var s PolicyStats
	vals := make([]uint64, p.ncpu)
	for i := range s {
		if err := p.objs.EspyPolicyStats.Lookup(uint32(i), &vals); err != nil {
			return PolicyStats{}, fmt.Errorf("ebpf: policy stats: %w", err)
		}
		for _, v := range vals {
			s[i] += v
		}
	}
	return s, nil
}

func checkCompiled(c *pbpf.Compiled) error {
	switch {
	case int(c.Meta.NTables) != len(c.Tables) || len(c.Tables) > pbpf.MaxTables:
		return fmt.Errorf("ebpf: load policy: %d tables (meta says %d), at most %d", len(c.Tables), c.Meta.NTables, pbpf.MaxTables)
	case len(c.Ranges) > pbpf.MaxRanges:
		return fmt.Errorf("ebpf: load policy: %d ranges, at most %d", len(c.Ranges), pbpf.MaxRanges)
	case len(c.Keys) > pbpf.MaxKeys:
		return fmt.Errorf("ebpf: load policy: %d keys, at most %d", len(c.Keys), pbpf.MaxKeys)
	}
	for k, b := range c.Keys {
		if b.Count < 1 || b.Count > pbpf.Bucket || k.Table >= c.Meta.NTables {
			return fmt.Errorf("ebpf: load policy: bad bucket %+v under table %d", b, k.Table)
		}
		for _, i := range b.Idx[:b.Count] {
			if int(i) >= len(c.Ranges) {
				return fmt.Errorf("ebpf: load policy: bucket refers to range %d of %d", i, len(c.Ranges))
			}
		}
	}
	return nil
}

func bpfKey(k *pbpf.Key) bpfEspyPolicyKey {
	return bpfEspyPolicyKey{Table: k.Table, Label: k.Label, Meta: k.Meta, Src: k.Src, Dst: k.Dst}
}

func bpfRange(r *pbpf.Range) bpfEspyPolicyRange {
	return bpfEspyPolicyRange{
		SrcLo: r.SrcLo, SrcHi: r.SrcHi, DstLo: r.DstLo, DstHi: r.DstHi,
		LabelLo: r.LabelLo, LabelHi: r.LabelHi,
		SportLo: r.SPortLo, SportHi: r.SPortHi, DportLo: r.DPortLo, DportHi: r.DPortHi,
		FamilyLo: r.FamilyLo, FamilyHi: r.FamilyHi, ProtoLo: r.ProtoLo, ProtoHi: r.ProtoHi,
		Action: r.Action, Final: b2u8(r.Final), Prio: r.Prio, Rule: r.Rule, Sa: r.SA,
	}
}

// writePolicySet fills an inactive set with c: keys of the previous policy
// in the set that c does not have are deleted, the rest is overwritten.
func (p *Program) writePolicySet(s policySet, c *pbpf.Compiled) error {
	keys := make([]bpfEspyPolicyKey, 0, len(c.Keys))
	vals := make([]bpfEspyPolicyBucket, 0, len(c.Keys))
	want := make(map[bpfEspyPolicyKey]struct{}, len(c.Keys))
	for k, b := range c.Keys {
		bk := bpfKey(&k)
		keys = append(keys, bk)
		vals = append(vals, bpfEspyPolicyBucket{Count: b.Count, Idx: b.Idx})
		want[bk] = struct{}{}
	}
	var stale []bpfEspyPolicyKey
	var k bpfEspyPolicyKey
	var v bpfEspyPolicyBucket
	it := s.keys.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("ebpf: load policy: list old keys: %w", err)
	}
	if err := batchDelete(s.keys, stale); err != nil {
		return fmt.Errorf("ebpf: load policy: delete old keys: %w", err)
	}
	if err := batchPut(s.keys, keys, vals); err != nil {
		return fmt.Errorf("ebpf: load policy: keys: %w", err)
	}

	idx := make([]uint32, len(c.Ranges))
	rs := make([]bpfEspyPolicyRange, len(c.Ranges))
	for i := range c.Ranges {
		idx[i], rs[i] = uint32(i), bpfRange(&c.Ranges[i])
	}
	if err := batchPut(s.ranges, idx, rs); err != nil {
		return fmt.Errorf("ebpf: load policy: ranges: %w", err)
	}
	tidx := make([]uint32, len(c.Tables))
	ts := make([]bpfEspyPolicyTable, len(c.Tables))
	for i := range c.Tables {
		t := &c.Tables[i]
		tidx[i], ts[i] = uint32(i), bpfEspyPolicyTable{Mask: bpfKey(&t.Mask), MinPrio: t.MinPrio, Keys: t.Keys}
	}
	if err := batchPut(s.tables, tidx, ts); err != nil {
		return fmt.Errorf("ebpf: load policy: tables: %w", err)
	}
	blooms := make([]bpfEspyPolicyBloom, len(c.Tables))
	for k := range c.Keys {
		h := bloomHash(&k) % bloomBits
		blooms[k.Table].W[h>>6] |= 1 << (h & 63)
	}
	if err := batchPut(s.bloom, tidx, blooms); err != nil {
		return fmt.Errorf("ebpf: load policy: bloom filters: %w", err)
	}
	m := bpfEspyPolicyMeta{Ntables: c.Meta.NTables, Flags: c.Meta.Flags, Keys: c.Meta.Keys, Ranges: c.Meta.Ranges, MissAction: c.Meta.MissAction}
	if err := s.meta.Put(uint32(0), &m); err != nil {
		return fmt.Errorf("ebpf: load policy: meta: %w", err)
	}
	return nil
}

// batchPut writes keys[i] -> vals[i], in batches where the kernel can.
func batchPut[K comparable, V any](m *ebpf.Map, keys []K, vals []V) error {
	const chunk = 4096
	for i := 0; i < len(keys); i += chunk {
		j := min(i+chunk, len(keys))
		if _, err := m.BatchUpdate(keys[i:j], vals[i:j], nil); err != nil {
			if !errors.Is(err, ebpf.ErrNotSupported) {
				return err
			}
			for x := i; x < j; x++ {
				if err := m.Put(&keys[x], &vals[x]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func batchDelete[K comparable](m *ebpf.Map, keys []K) error {
	const chunk = 4096
	for i := 0; i < len(keys); i += chunk {
		j := min(i+chunk, len(keys))
		if _, err := m.BatchDelete(keys[i:j], nil); err != nil {
			if !errors.Is(err, ebpf.ErrNotSupported) {
				return err
			}
			for x := i; x < j; x++ {
				if err := m.Delete(&keys[x]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return err
				}
			}
		}
	}
	return nil
}

// Frames for MeasurePolicyLookup: outer IPv4, ESP-NULL in tunnel mode.
const (
	measureSPI    = 0x5e5e0001
	measureICVLen = 12
)

var (
	measureOuterSrc = [4]byte{192, 0, 2, 1}
	measureOuterDst = [4]byte{192, 0, 2, 2}
)

// PolicyFrame returns an Ethernet frame carrying pkt as the inner packet of
// a tunnel-mode ESP-NULL packet (outer IPv4 192.0.2.1 > 192.0.2.2, SPI spi,
// no IV, ICV icvLen bytes), with a TCP, UDP or other transport header that
// carries pkt's ports (ICMP: type and code from pkt.SPort). The label is
// not on the wire. Used to benchmark and test the compiled SPD in XDP.
func PolicyFrame(pkt *policy.Packet, spi uint32, icvLen int) []byte {
	var l4 []byte
	switch pkt.Proto {
	case 6: // TCP
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
	case 1, 58: // ICMP, ICMPv6: type << 8 | code
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4, pkt.SPort)
	default: // UDP and the rest: ports first, as far as the program reads
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], 8+16)
	}
	if pkt.Proto != 1 && pkt.Proto != 58 {
		binary.BigEndian.PutUint16(l4[0:], pkt.SPort)
		binary.BigEndian.PutUint16(l4[2:], pkt.DPort)
	}
	l4 = append(l4, make([]byte, 16)...)
	var in []byte
	nh := uint8(4)
	if pkt.Family == 4 {
		in = ipv4Header(pkt.Proto, u32be(pkt.Src.Lo), u32be(pkt.Dst.Lo), len(l4))
	} else {
		nh = 41
		in = make([]byte, 40)
		in[0] = 0x60
		binary.BigEndian.PutUint16(in[4:], uint16(len(l4)))
		in[6], in[7] = pkt.Proto, 64
		binary.BigEndian.PutUint64(in[8:], pkt.Src.Hi)
		binary.BigEndian.PutUint64(in[16:], pkt.Src.Lo)
		binary.BigEndian.PutUint64(in[24:], pkt.Dst.Hi)
		binary.BigEndian.PutUint64(in[32:], pkt.Dst.Lo)
	}
	in = append(in, l4...)
	esp := binary.BigEndian.AppendUint32(nil, spi)
	esp = binary.BigEndian.AppendUint32(esp, 1)
	esp = append(esp, in...)
	pad := (4 - (len(in)+2)%4) % 4
	for i := 1; i <= pad; i++ {
		esp = append(esp, byte(i))
	}
	esp = append(esp, byte(pad), nh)
	esp = append(esp, make([]byte, icvLen)...)
	frame := []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00}
	frame = append(frame, ipv4Header(50, measureOuterSrc, measureOuterDst, len(esp))...)
	return append(frame, esp...)
}

func u32be(v uint64) [4]byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	return b
}

func ipv4Header(proto uint8, src, dst [4]byte, payload int) []byte {
	b := make([]byte, 20)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+payload))
	b[8], b[9] = 64, proto
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return b
}

// PolicyTiming is what MeasurePolicy measured, in mean kernel-measured
// nanoseconds per packet.
type PolicyTiming struct {
	Total    float64 // the whole program with the policy published
	Baseline float64 // the same frames with no policy published (exact stage and default)
	Lookup   float64 // Total - Baseline: the compiled-SPD lookup; may be slightly negative from noise
	Packets  int     // distinct packets run
}

// MeasurePolicyLookup returns the time per packet of the compiled-SPD
// lookup in XDP: MeasurePolicy's Lookup. It fills `espy policy bench`'s
// bpf_ns field. It needs root (CAP_BPF, CAP_NET_ADMIN).
func MeasurePolicyLookup(c *pbpf.Compiled, packets []policy.Packet) (nsPerPacket float64, err error) {
	t, err := MeasurePolicy(c, packets)
	return t.Lookup, err
}

// MeasurePolicy loads a private XDP program, publishes c, marks one SA as
// ESP-NULL and runs the packets (at most 512 of them, each in a tunnel-mode
// ESP-NULL frame, see PolicyFrame) 1000 times each in the kernel with
// BPF_PROG_TEST_RUN, alternately with the policy published and withdrawn.
// Labels are not on the wire; ports of protocols without ports read as 0.
// Each run syscall also costs about a millisecond outside the measured
// time, so it takes about a second. It needs root.
func MeasurePolicy(c *pbpf.Compiled, packets []policy.Packet) (PolicyTiming, error) {
	return measurePolicy(c, packets, 512, 1000)
}

func measurePolicy(c *pbpf.Compiled, packets []policy.Packet, maxPackets, repeat int) (PolicyTiming, error) {
	if c == nil || len(packets) == 0 {
		return PolicyTiming{}, errors.New("ebpf: measure policy: no policy or no packets")
	}
	p, err := Load(Config{VerdictEntries: 16, PendingEntries: 16, InnerRuleEntries: 16, DisableSampling: true})
	if err != nil {
		return PolicyTiming{}, err
	}
	defer p.Close()
	if err := p.LoadPolicy(c); err != nil {
		return PolicyTiming{}, err
	}
	k := FlowKey{Family: 4, Spi: measureSPI}
	copy(k.Src[:], measureOuterSrc[:])
	copy(k.Dst[:], measureOuterDst[:])
	if err := p.SetVerdict(k, Verdict{Kind: VerdictNull, IcvLen: measureICVLen, Mode: ModeTunnel}); err != nil {
		return PolicyTiming{}, err
	}
	if len(packets) > maxPackets {
		packets = packets[:maxPackets]
	}
	var t PolicyTiming
	for i := range packets {
		frame := PolicyFrame(&packets[i], measureSPI, measureICVLen)
		for _, on := range []bool{true, false} {
			state := uint64(0)
			if on {
				state = policyCtlLoaded
			}
			// The published set stays written: only the state bit moves.
			if err := p.setPolicyState(state); err != nil {
				return PolicyTiming{}, err
			}
			_, d, err := p.XDP().Benchmark(frame, repeat, nil)
			if err != nil {
				return PolicyTiming{}, fmt.Errorf("ebpf: measure policy: %w", err)
			}
			if on {
				t.Total += float64(d.Nanoseconds())
			} else {
				t.Baseline += float64(d.Nanoseconds())
			}
		}
	}
	n := float64(len(packets))
	t.Packets = len(packets)
	t.Total /= n
	t.Baseline /= n
	t.Lookup = t.Total - t.Baseline
	return t, nil
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
