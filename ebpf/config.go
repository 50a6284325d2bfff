package ebpf

import (
	"fmt"
	"math"
	"os"
)

// DefaultPinPath is where a deployed espy pins its maps and links.
const DefaultPinPath = "/sys/fs/bpf/espy"

// Defaults applied by Load to zero fields of Config.
const (
	DefaultVerdictEntries   = 65536
	DefaultPendingEntries   = 16384
	DefaultInnerRuleEntries = 16384
	DefaultSPDCacheEntries  = 65536
	DefaultSampleCount      = 4
	DefaultSnapLen          = 2048
	DefaultSampleRate       = 2000 // samples per second per CPU
	DefaultSampleBurst      = 64
	DefaultSampleRingBytes  = 8 << 20
)

// MaxSnapLen bounds Config.SnapLen: the program assembles a sample in a
// per-CPU buffer of this many frame bytes (ESPY_MAX_SNAPLEN).
const MaxSnapLen = 16384

// Config sizes the maps and sets the program's behaviour. The zero value is
// a usable configuration: fail-open, encrypted flows pass, inner default
// allow, four samples per unknown flow, no pinning.
type Config struct {
	VerdictEntries   int // verdict map (LRU) size; default 65536
	PendingEntries   int // pending map (LRU) size; default 16384
	InnerRuleEntries int // inner-policy map size; default 16384
	// FlowSlots is the number of per-flow counter slots; default
	// DefaultFlowSlots(VerdictEntries), a quarter more than verdicts.
	// SetVerdict fails with ErrNoSlot when all are in use.
	FlowSlots int
	// SPDCacheEntries sizes the SPD cache (LRU): the compiled SPD's answer
	// by inner 5-tuple; default 65536.
	SPDCacheEntries int
	// NoSPDCache walks the compiled SPD for every packet of a null flow.
	NoSPDCache bool

	SampleCount     uint32 // samples per unknown flow; default 4
	DisableSampling bool   // send no samples at all (SampleCount is ignored)
	SnapLen         uint32 // frame bytes per sample; default 2048, at most MaxSnapLen
	// SampleRate and SampleBurst bound the samples each CPU sends: a token
	// bucket of SampleBurst tokens refilled at SampleRate per second.
	// Defaults 2000/s and 64.
	SampleRate  uint32
	SampleBurst uint32
	// SampleRingBytes sizes the ring buffer that carries samples to
	// userspace, shared by all CPUs: a power of two, at least a page;
	// default 8 MiB (some 6,000 samples of 1,300-byte frames, 30 ms of a
	// flood at 200,000 samples a second).
	SampleRingBytes int
	NoRateLimit     bool // send every sample the count allows, unbounded

	// FailClosed drops unknown flows (pending and beyond SampleCount),
	// malformed IPsec and ESP-NULL packets whose inner header cannot be read;
	// the default passes them.
	FailClosed      bool
	EncryptedAction Action // for encrypted flows; default ActionPass
	InnerDefault    Action // for ESP-NULL when no inner rule matches; default ActionPass

	// Bridge forwards every passing frame to the egress port set with
	// SetBridgePort instead of handing it to the local stack.
	Bridge bool

	// PinPath, if set, is a directory on a bpffs where the verdict, flow
	// counter, pending and inner-rule maps and the XDP links are pinned. A
	// later Load with the same PinPath and sizes reuses them.
	PinPath string
}

// DefaultFlowSlots returns the counter slots Load gives a verdict map of
// verdicts entries: a quarter more, at least 64 more. With exactly as many
// slots as verdicts a full LRU verdict map stops taking verdicts: every slot
// belongs to a live verdict, and SetVerdict needs a free slot before the
// update that would let the LRU evict an old entry (ErrNoSlot for good).
func DefaultFlowSlots(verdicts int) int {
	return int(min(int64(verdicts)+max(int64(verdicts)/4, 64), math.MaxInt32-1))
}

func (c Config) withDefaults() (Config, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.VerdictEntries, DefaultVerdictEntries)
	def(&c.PendingEntries, DefaultPendingEntries)
	def(&c.InnerRuleEntries, DefaultInnerRuleEntries)
	def(&c.FlowSlots, DefaultFlowSlots(c.VerdictEntries))
	def(&c.SPDCacheEntries, DefaultSPDCacheEntries)
	for _, n := range []int{c.VerdictEntries, c.PendingEntries, c.InnerRuleEntries, c.FlowSlots, c.SPDCacheEntries} {
		if n < 1 || n > math.MaxInt32-1 {
			return c, fmt.Errorf("ebpf: config: map size %d out of range", n)
		}
	}
	if c.SampleCount == 0 {
		c.SampleCount = DefaultSampleCount
	}
	if c.SnapLen == 0 {
		c.SnapLen = DefaultSnapLen
	}
	if c.SnapLen > MaxSnapLen {
		return c, fmt.Errorf("ebpf: config: snaplen %d above %d", c.SnapLen, MaxSnapLen)
	}
	def(&c.SampleRingBytes, DefaultSampleRingBytes)
	if r := c.SampleRingBytes; r < os.Getpagesize() || r&(r-1) != 0 || r > 1<<30 {
		return c, fmt.Errorf("ebpf: config: sample ring of %d bytes: not a power of two between a page and 1 GiB", r)
	}
	if c.SampleRate == 0 {
		c.SampleRate = DefaultSampleRate
	}
	if c.SampleBurst == 0 {
		c.SampleBurst = DefaultSampleBurst
	}
	if c.EncryptedAction == ActionDefault {
		c.EncryptedAction = ActionPass
	}
	if c.InnerDefault == ActionDefault {
		c.InnerDefault = ActionPass
	}
	if c.EncryptedAction > ActionCount || c.InnerDefault > ActionCount {
		return c, fmt.Errorf("ebpf: config: unknown action %v or %v", c.EncryptedAction, c.InnerDefault)
	}
	return c, nil
}

// bpf returns the value of the program's config map.
func (c Config) bpf() bpfEspyConfig {
	b := bpfEspyConfig{
		SampleCount:     c.SampleCount,
		Snaplen:         c.SnapLen,
		EncryptedAction: uint8(c.EncryptedAction),
		InnerDefault:    uint8(c.InnerDefault),
	}
	if c.DisableSampling {
		b.SampleCount = 0
	}
	if !c.NoRateLimit {
		// GCRA: emission interval T and tolerance T*(burst-1) let burst
		// samples through at once, then one every T.
		b.SampleIntervalNs = uint64(1e9) / uint64(c.SampleRate)
		if b.SampleIntervalNs == 0 {
			b.SampleIntervalNs = 1
		}
		b.SampleBurstNs = b.SampleIntervalNs * uint64(c.SampleBurst-1)
	}
	if c.FailClosed {
		b.FailClosed = 1
	}
	if c.NoSPDCache {
		b.SpdCacheOff = 1
	}
	if c.Bridge {
		b.Bridge = 1
	}
	return b
}

// Reconfigure changes the program's behaviour while it runs: sampling, rate
// limit, fail mode, actions and bridge mode. Map sizes and PinPath cannot
// change and must equal the loaded ones (or be zero).
func (p *Program) Reconfigure(cfg Config) error {
	if cfg.PinPath == "" {
		cfg.PinPath = p.pinPath
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if cfg.VerdictEntries != p.cfg.VerdictEntries || cfg.PendingEntries != p.cfg.PendingEntries ||
		cfg.InnerRuleEntries != p.cfg.InnerRuleEntries || cfg.FlowSlots != p.cfg.FlowSlots ||
		cfg.SPDCacheEntries != p.cfg.SPDCacheEntries || cfg.SampleRingBytes != p.cfg.SampleRingBytes ||
		cfg.PinPath != p.cfg.PinPath {
		return fmt.Errorf("ebpf: reconfigure: map sizes and pin path are fixed at load")
	}
	if err := p.writeConfig(cfg); err != nil {
		return err
	}
	p.cfg = cfg
	return nil
}

// writeConfig writes cfg, and whether the exact stage has rules, to the
// program's config map. p.mu is held, or p is not shared yet.
func (p *Program) writeConfig(cfg Config) error {
	b := cfg.bpf()
	if p.innerRules > 0 {
		b.ExactRules = 1
	}
	if err := p.objs.Config.Put(uint32(0), b); err != nil {
		return fmt.Errorf("ebpf: write config: %w", err)
	}
	return nil
}
