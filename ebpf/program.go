package ebpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no verdict, rule or bridge port for the key.
	ErrNotFound = errors.New("ebpf: not found")
	// ErrNoSlot: every per-flow counter slot is held by a verdict.
	ErrNoSlot = errors.New("ebpf: no free flow counter slot")
	// ErrClosed: the Program was closed.
	ErrClosed = errors.New("ebpf: program closed")
	// ErrWrongNetns: the caller is not in the network namespace the
	// interfaces were attached in.
	ErrWrongNetns = errors.New("ebpf: caller is in another network namespace than the attached interfaces")
)

// pinnedMaps are the maps that survive a restart when Config.PinPath is set.
// The config, counters of exit reasons, sample bucket and ring buffer are
// per-process state and are created fresh.
var pinnedMaps = []string{bpfMapVerdicts, bpfMapFlowStats, bpfMapPending, bpfMapInnerRules}

// Program is the loaded XDP program and its maps. Its methods are safe for
// concurrent use.
type Program struct {
	objs    bpfObjects
	ncpu    int
	pinPath string // Config.PinPath, fixed at load

	mu     sync.Mutex
	cfg    Config
	closed bool
	slots  slotTable
	// innerRules counts the entries of inner_rules: the config tells the
	// program to skip the exact stage while there are none.
	innerRules int
	// slotKeys[s] is the flow whose verdict holds slot s, for SeenFlows;
	// slotKind[s] its verdict's kind and slotGen[s] how many times the
	// slot was handed out, for ActiveFlows.
	slotKeys []FlowKey
	slotKind []uint8
	slotGen  []uint32
	// active has a bit per slot whose flow_seen byte was set at a read of
	// the seen map (SeenFlows or ActiveFlows) since the last ActiveFlows;
	// activePrev those of the ActiveFlows before.
	active, activePrev []uint64
	// unseen has a bit per slot whose flow_seen byte was read but not yet
	// reported by SeenFlows: ActiveFlows clears the same bytes, and the
	// flows it drained must still reach the next SeenFlows.
	unseen []uint64
	actMu  sync.Mutex // ActiveFlows' buffers
	actBuf []bpfEspyFlowStats
	actKey uint32
	seen   []byte // flow_seen, memory-mapped
	links  map[int]link.Link
	// linkNetns records the network namespace (inode) of each link.
	linkNetns map[link.Link]uint64
}

// Load loads the XDP program with cfg. With cfg.PinPath set it reuses maps
// pinned there by an earlier Load (a restart keeps its verdicts) and pins
// newly created ones; a pinned map whose size differs from cfg fails the
// load with an error wrapping ebpf.ErrMapIncompatible.
func Load(cfg Config) (*Program, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	spec, err := loadBpf()
	if err != nil {
		return nil, fmt.Errorf("ebpf: load spec: %w", err)
	}
	spec.Maps[bpfMapVerdicts].MaxEntries = uint32(cfg.VerdictEntries)
	spec.Maps[bpfMapPending].MaxEntries = uint32(cfg.PendingEntries)
	spec.Maps[bpfMapInnerRules].MaxEntries = uint32(cfg.InnerRuleEntries)
	// Slot 0 means "no counters", so the array holds one more.
	spec.Maps[bpfMapFlowStats].MaxEntries = uint32(cfg.FlowSlots) + 1
	spec.Maps[bpfMapFlowSeen].MaxEntries = uint32(cfg.FlowSlots/64 + 1)
	spec.Maps[bpfMapSpdCache].MaxEntries = uint32(cfg.SPDCacheEntries)
	spec.Maps[bpfMapSamples].MaxEntries = uint32(cfg.SampleRingBytes)

	var opts ebpf.CollectionOptions
	if cfg.PinPath != "" {
		if err := os.MkdirAll(cfg.PinPath, 0o700); err != nil {
			return nil, fmt.Errorf("ebpf: pin directory: %w", err)
		}
		for _, name := range pinnedMaps {
			spec.Maps[name].Pinning = ebpf.PinByName
		}
		opts.Maps.PinPath = cfg.PinPath
	}

	p := &Program{cfg: cfg, pinPath: cfg.PinPath, links: make(map[int]link.Link), linkNetns: make(map[link.Link]uint64)}
	if err := spec.LoadAndAssign(&p.objs, &opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("ebpf: verifier rejected program: %+v", ve)
		}
		return nil, fmt.Errorf("ebpf: load objects: %w", err)
	}
	// Pinned inner rules survive a restart: count them, so the program
	// knows whether to look there.
	var ik InnerKey
	for it := p.objs.InnerRules.Iterate(); it.Next(&ik, new(InnerRule)); {
		p.innerRules++
	}
	if err := p.writeConfig(cfg); err != nil {
		p.objs.Close()
		return nil, err
	}
	if p.ncpu, err = ebpf.PossibleCPU(); err != nil {
		p.objs.Close()
		return nil, fmt.Errorf("ebpf: possible CPUs: %w", err)
	}
	p.slots.init(cfg.FlowSlots)
	p.slotKeys = make([]FlowKey, cfg.FlowSlots+1)
	p.slotKind = make([]uint8, cfg.FlowSlots+1)
	p.slotGen = make([]uint32, cfg.FlowSlots+1)
	p.active = make([]uint64, (cfg.FlowSlots+1+63)/64)
	p.activePrev = make([]uint64, len(p.active))
	p.unseen = make([]uint64, len(p.active))
	p.actBuf = make([]bpfEspyFlowStats, p.ncpu)
	if err := p.reconcileSlots(); err != nil {
		p.objs.Close()
		return nil, err
	}
	if err := p.mapSeen(); err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

// Config returns the configuration in effect, defaults filled in.
func (p *Program) Config() Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

// XDP returns the loaded XDP program, for test runs and for attaching it by
// other means. It stays owned by p.
func (p *Program) XDP() *ebpf.Program { return p.objs.EspyXdp }

// Close detaches links that are not pinned and releases every kernel object
// the Program holds. Pinned maps and links stay in the bpffs, so XDP keeps
// running with the last verdicts until the next Load or Unpin.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for ifindex, l := range p.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("ebpf: close link on ifindex %d: %w", ifindex, err))
		}
	}
	p.links = nil
	if p.seen != nil {
		if err := unix.Munmap(p.seen); err != nil {
			errs = append(errs, fmt.Errorf("ebpf: unmap flow_seen: %w", err))
		}
		p.seen = nil
	}
	if err := p.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("ebpf: close objects: %w", err))
	}
	return errors.Join(errs...)
}

// Unpin removes the pins of maps and links under Config.PinPath and the
// directory itself if it is then empty. Attached pinned links are detached
// once the Program is closed.
func (p *Program) Unpin() error {
	if p.pinPath == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, l := range p.links {
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("ebpf: unpin link: %w", err))
		}
	}
	// By path rather than through the map objects, so that Unpin also works
	// after Close, and also removes link pins an earlier run left.
	pins, _ := filepath.Glob(filepath.Join(p.pinPath, linkPinPrefix+"*"))
	for _, name := range pinnedMaps {
		pins = append(pins, filepath.Join(p.pinPath, name))
	}
	for _, f := range pins {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("ebpf: unpin: %w", err))
		}
	}
	if err := os.Remove(p.pinPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("ebpf: remove pin directory: %w", err))
	}
	return errors.Join(errs...)
}
