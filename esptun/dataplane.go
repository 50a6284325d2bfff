package esptun

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/espy-dpi/espy/esp"
	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
	"github.com/espy-dpi/espy/tun"
)

// Defaults.
const (
	DefaultName = "espy0"
	// DefaultMTU leaves room in a 1500-byte path for the largest ESP
	// overhead of the supported algorithms: IPv6 (40) + UDP (8) + ESP
	// header (8) + IV (16) + padding (15) + trailer (2) + ICV (32).
	DefaultMTU   = 1500 - 121
	DefaultTable = 0xe59 // routing table of the SA routes
	DefaultMark  = 0xe59 // SO_MARK of the sockets carrying IKE and ESP
	// DefaultRulePriority is the priority of the rule sending marked
	// packets to the main table; the rule for the SA table follows it.
	DefaultRulePriority = 2900
)

// RetireGrace is how long an inbound SA replaced by a rekey still opens
// packets after its removal. The peer's TUN reader may have sealed a
// packet on the old SA just before switching, and that packet travels
// over another socket and goroutine than the IKE Delete of the SA, so it
// can arrive after the Delete was processed; two seconds covers a
// descheduled sender on a loaded host while the old keys soon stop
// being usable. Late packets still pass the ICV and anti-replay checks.
const RetireGrace = 2 * time.Second

// Config configures a userspace ESP data plane.
type Config struct {
	Name  string         // TUN device name; "" means DefaultName
	MTU   int            // 0 means DefaultMTU
	Addrs []netip.Prefix // addresses of the TUN device: this host's inner addresses in tunnel mode
	// Endpoint carries ESP-in-UDP on its NAT-T socket. Nil: only plain
	// ESP SAs can be installed.
	Endpoint     *ike.Endpoint
	Table        uint32 // 0: DefaultTable
	Mark         uint32 // 0: DefaultMark
	RulePriority uint32 // 0: DefaultRulePriority
	ReplayWindow int    // packets; 0: esp.DefaultReplayWindow
	Logger       *slog.Logger
}

// DataPlane is a running userspace ESP data plane. It implements
// ike.DataPlane.
type DataPlane struct {
	cfg Config
	log *slog.Logger
	dev *tun.Device
	nl  *tun.Netlink

	raw4, raw6     int      // raw IPPROTO_ESP sockets (-1: none)
	rawf4, rawf6   *os.File // the same, for reading through the poller
	rules          []tun.Rule
	mu             sync.Mutex // serialises InstallSA, RemoveSA and route changes
	routes         map[tun.Route]int
	sas            atomic.Pointer[tables]
	closed         atomic.Bool
	wg             sync.WaitGroup
	noSA, noSPI    atomic.Uint64
	selectorDrops  atomic.Uint64
	sendErrors     atomic.Uint64
	tunWriteErrors atomic.Uint64
	limitDrops     atomic.Uint64
	limitHandler   atomic.Pointer[ike.LimitHandler]
	removed        [2]esp.Counters // outbound, inbound SAs no longer installed; guarded by mu
	// grace is RetireGrace in a running data plane; the unit tests
	// shorten it, and zero (a bare DataPlane) retires nothing.
	grace time.Duration
}

// tables is an immutable snapshot of the installed SAs; writers replace
// it, the packet paths read it without locks.
type tables struct {
	in  map[uint32]*inSA
	out []*outSA // newest first
	// retiring holds inbound SAs removed after a rekey for their grace
	// period (RetireGrace): input still finds them, Status does not.
	retiring map[uint32]*inSA
}

// lookupIn returns the inbound SA for spi, a retiring one included.
// Lookups in a nil map do not allocate.
func (t *tables) lookupIn(spi uint32) *inSA {
	if s := t.in[spi]; s != nil {
		return s
	}
	return t.retiring[spi]
}

// Open creates the TUN device with its addresses and policy rules and
// starts the data plane. Call it in the network namespace the data plane
// serves; everything it opens stays there.
func Open(cfg Config) (dp *DataPlane, err error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 576 || cfg.MTU > 65535-121 {
		return nil, fmt.Errorf("esptun: MTU %d outside 576..%d", cfg.MTU, 65535-121)
	}
	if cfg.Table == 0 {
		cfg.Table = DefaultTable
	}
	if cfg.Mark == 0 {
		cfg.Mark = DefaultMark
	}
	if cfg.RulePriority == 0 {
		cfg.RulePriority = DefaultRulePriority
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &DataPlane{cfg: cfg, log: cfg.Logger, raw4: -1, raw6: -1, routes: map[tun.Route]int{}, grace: RetireGrace}
	d.sas.Store(&tables{in: map[uint32]*inSA{}})
	defer func() {
		if err != nil {
			d.release()
		}
	}()
	if d.dev, err = tun.Create(cfg.Name); err != nil {
		return nil, err
	}
	if d.nl, err = tun.OpenNetlink(); err != nil {
		return nil, err
	}
	if err := d.nl.SetLink(d.dev.Index(), cfg.MTU, txQueueLen); err != nil {
		return nil, err
	}
	for _, p := range cfg.Addrs {
		if err := d.nl.AddAddr(d.dev.Index(), p); err != nil {
			return nil, err
		}
	}
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		rs := []tun.Rule{
			{Family: fam, Priority: cfg.RulePriority, Mark: cfg.Mark, Table: unix.RT_TABLE_MAIN},
			{Family: fam, Priority: cfg.RulePriority + 1, Table: cfg.Table},
		}
		for _, r := range rs {
			if err := d.nl.AddRule(r); err != nil {
				if fam == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
					break // IPv6 disabled
				}
				return nil, err
			}
			d.rules = append(d.rules, r)
		}
	}
	if err := d.openRaw(); err != nil {
		return nil, err
	}
	if ep := cfg.Endpoint; ep != nil {
		if err := ep.Control(func(fd uintptr) error { bigBuffers(fd); return d.mark(fd) }); err != nil {
			return nil, fmt.Errorf("esptun: mark IKE sockets: %w", err)
		}
		ep.SetESPHandler(d.udpInput())
	}
	d.wg.Add(1)
	go d.tunLoop()
	if d.rawf4 != nil {
		d.wg.Add(1)
		go d.rawLoop(d.rawf4, true)
	}
	if d.rawf6 != nil {
		d.wg.Add(1)
		go d.rawLoop(d.rawf6, false)
	}
	return d, nil
}

// txQueueLen is the TUN device's queue in packets. The kernel's default
// (500) overflowed while the reader was descheduled during TCP bursts on
// the shared test machine: 240 drops (1.3 %) in 20 MB of bulk TCP, each
// halving the sender's window; 1000 gave none (docs/benchmarks.md).
const txQueueLen = 1000

// socketBuffer is the receive and send buffer of the sockets carrying
// ESP: the default (about 200 KB) overflows while a reader is descheduled
// under bulk TCP, and each overflow is a lost packet.
const socketBuffer = 4 << 20

// bigBuffers raises fd's buffers, beyond net.core.rmem_max where the
// process may (CAP_NET_ADMIN); failure leaves the defaults.
func bigBuffers(fd uintptr) {
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], socketBuffer) != nil {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], socketBuffer)
		}
	}
}

func (d *DataPlane) mark(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(d.cfg.Mark))
}

// openRaw opens the raw ESP sockets; IPv6 is optional.
func (d *DataPlane) openRaw() error {
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_ESP)
		if err != nil {
			if fam == unix.AF_INET6 {
				continue
			}
			return fmt.Errorf("esptun: raw ESP socket: %w", err)
		}
		if err := d.mark(uintptr(fd)); err != nil {
			unix.Close(fd)
			return fmt.Errorf("esptun: SO_MARK: %w", err)
		}
		bigBuffers(uintptr(fd))
		f := os.NewFile(uintptr(fd), "esp")
		if fam == unix.AF_INET {
			d.raw4, d.rawf4 = fd, f
		} else {
			d.raw6, d.rawf6 = fd, f
		}
	}
	return nil
}

// String names the data plane, for the report at start.
func (d *DataPlane) String() string {
	return fmt.Sprintf("userspace ESP over TUN %s (mtu %d)", d.dev.Name(), d.cfg.MTU)
}

// Name returns the TUN device name.
func (d *DataPlane) Name() string { return d.dev.Name() }

// MTU returns the TUN device MTU.
func (d *DataPlane) MTU() int { return d.cfg.MTU }

// InstallSA implements ike.DataPlane.
func (d *DataPlane) InstallSA(k ike.KeyedSA) error {
	if d.closed.Load() {
		return errors.New("esptun: closed")
	}
	if k.Encap == ike.EncapUDP && d.cfg.Endpoint == nil {
		return fmt.Errorf("esptun: SA %08x is UDP-encapsulated and no IKE endpoint is configured", k.SPI)
	}
	if k.Encap == ike.EncapNone && k.Dst.Is6() && d.rawf6 == nil {
		return fmt.Errorf("esptun: SA %08x: plain ESP over IPv6 without an IPv6 raw socket", k.SPI)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.sas.Load()
	nt := &tables{in: old.in, out: old.out, retiring: old.retiring}
	if k.Inbound {
		s, err := newInSA(k, d.cfg.ReplayWindow)
		if err != nil {
			return err
		}
		if _, dup := old.in[k.SPI]; dup {
			return fmt.Errorf("esptun: inbound SA %08x already installed", k.SPI)
		}
		if r := old.retiring[k.SPI]; r != nil {
			// The SPI was reused within the grace: the new SA owns
			// it now, the retiring one ends early.
			nt.retiring = d.dropRetiring(old.retiring, r)
		}
		for _, o := range old.out {
			if o.info.SPI == k.PairSPI && o.info.Dst == k.Src {
				s.pair.Store(o)
			}
		}
		nt.in = make(map[uint32]*inSA, len(old.in)+1)
		for spi, v := range old.in {
			nt.in[spi] = v
		}
		nt.in[k.SPI] = s
		d.sas.Store(nt)
		d.log.Debug("esptun: inbound SA installed", "spi", fmt.Sprintf("%08x", k.SPI))
		return nil
	}
	s, err := newOutSA(k)
	if err != nil {
		return err
	}
	// As the exchange's responder, keep sending on the SA being replaced
	// until the peer shows it has the new pair; as its initiator, the
	// peer installed the pair before answering. An SA past its hard
	// limit sends nothing, so there is nothing to wait for.
	pending := false
	for _, o := range old.out {
		if sameTraffic(&o.info, &k.SAInfo) && o.active.Load() && !o.lim.expired() && !k.Initiated {
			pending = true
		}
	}
	s.active.Store(!pending)
	if err := d.addRoutes(&k.SAInfo); err != nil {
		return err
	}
	nt.out = append([]*outSA{s}, old.out...)
	d.sas.Store(nt)
	d.log.Debug("esptun: outbound SA installed", "spi", fmt.Sprintf("%08x", k.SPI), "active", !pending)
	return nil
}

// RemoveSA implements ike.DataPlane. After Close it does nothing: the
// device and its routes are gone already.
func (d *DataPlane) RemoveSA(i ike.SAInfo) {
	if d.closed.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.sas.Load()
	nt := &tables{in: old.in, out: old.out, retiring: old.retiring}
	if i.Inbound {
		gone, ok := old.in[i.SPI]
		if !ok {
			return
		}
		nt.in = make(map[uint32]*inSA, len(old.in))
		for spi, v := range old.in {
			if spi != i.SPI {
				nt.in[spi] = v
			}
		}
		gone.removedAt = gone.in.Counters()
		addCounters(&d.removed[1], gone.removedAt)
		if d.grace > 0 && !gone.lim.expired() && hasSuccessor(nt.in, gone) {
			// A rekey: packets the peer sealed on this SA just
			// before switching may still be on their way.
			nt.retiring = make(map[uint32]*inSA, len(old.retiring)+1)
			for spi, v := range old.retiring {
				nt.retiring[spi] = v
			}
			nt.retiring[i.SPI] = gone
			gone.retire = time.AfterFunc(d.grace, func() { d.endGrace(gone) })
		}
		d.sas.Store(nt)
		return
	}
	nt.out = nil
	var gone *outSA
	for _, o := range old.out {
		if o.info.SPI == i.SPI && o.info.Dst == i.Dst && gone == nil {
			gone = o
			continue
		}
		nt.out = append(nt.out, o)
	}
	if gone == nil {
		return
	}
	// A successor waiting for the peer takes over now: the peer deleted
	// or replaced the old SA, so it has the new one.
	if gone.active.Load() {
		for _, o := range nt.out {
			if sameTraffic(&o.info, &gone.info) {
				o.active.Store(true)
				break
			}
		}
	}
	d.sas.Store(nt)
	addCounters(&d.removed[0], gone.o.Counters())
	d.delRoutes(&gone.info)
}

// hasSuccessor reports whether inbound SAs hold another SA for the
// traffic of s: s was replaced by a rekey rather than deleted for good.
func hasSuccessor(in map[uint32]*inSA, s *inSA) bool {
	for _, o := range in {
		if o != s && o.info.Src == s.info.Src && sameTraffic(&o.info, &s.info) {
			return true
		}
	}
	return false
}

// endGrace removes retiring SA s when its grace is over, unless an SA
// reusing its SPI or Close ended it already.
func (d *DataPlane) endGrace(s *inSA) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.sas.Load()
	if old.retiring[s.info.SPI] != s {
		return
	}
	d.sas.Store(&tables{in: old.in, out: old.out, retiring: d.dropRetiring(old.retiring, s)})
}

// dropRetiring returns retiring without s and counts what s opened
// during its grace. The caller holds mu and stores the result.
func (d *DataPlane) dropRetiring(retiring map[uint32]*inSA, s *inSA) map[uint32]*inSA {
	s.retire.Stop()
	c := s.in.Counters()
	r := &s.removedAt
	// The counters were added at the removal; only the late packets'
	// share is new.
	addCounters(&d.removed[1], esp.Counters{Packets: c.Packets - r.Packets, Bytes: c.Bytes - r.Bytes,
		ReplayDrops: c.ReplayDrops - r.ReplayDrops, AuthFailures: c.AuthFailures - r.AuthFailures, OtherDrops: c.OtherDrops - r.OtherDrops})
	*r = c
	n := make(map[uint32]*inSA, len(retiring))
	for spi, v := range retiring {
		if v != s {
			n[spi] = v
		}
	}
	return n
}

func addCounters(sum *esp.Counters, c esp.Counters) {
	sum.Packets += c.Packets
	sum.Bytes += c.Bytes
	sum.ReplayDrops += c.ReplayDrops
	sum.AuthFailures += c.AuthFailures
	sum.OtherDrops += c.OtherDrops
}

// routesFor lists the routes an outbound SA needs: its remote selectors
// through the device, from its local address when that is one host.
func (d *DataPlane) routesFor(i *ike.SAInfo) ([]tun.Route, error) {
	var src4, src6 netip.Addr
	for _, s := range i.LocalTS {
		if s.StartAddr == s.EndAddr && s.StartAddr.Is4() && !src4.IsValid() {
			src4 = s.StartAddr
		}
		if s.StartAddr == s.EndAddr && s.StartAddr.Is6() && !src6.IsValid() {
			src6 = s.StartAddr
		}
	}
	var rs []tun.Route
	for _, s := range i.RemoteTS {
		ps, ok := message.RangePrefixes(s.StartAddr, s.EndAddr, maxRoutePrefixes)
		if !ok {
			return nil, fmt.Errorf("esptun: remote selector %v-%v needs more than %d routes", s.StartAddr, s.EndAddr, maxRoutePrefixes)
		}
		for _, p := range ps {
			r := tun.Route{Dst: p, Index: d.dev.Index(), Table: d.cfg.Table, Src: src4}
			if p.Addr().Is6() {
				r.Src = src6
			}
			rs = append(rs, r)
		}
	}
	return rs, nil
}

func (d *DataPlane) addRoutes(i *ike.SAInfo) error {
	rs, err := d.routesFor(i)
	if err != nil {
		return err
	}
	for n, r := range rs {
		if d.routes[r] == 0 {
			if err := d.nl.AddRoute(r); err != nil {
				for _, done := range rs[:n] {
					d.unref(done)
				}
				return err
			}
		}
		d.routes[r]++
	}
	return nil
}

func (d *DataPlane) delRoutes(i *ike.SAInfo) {
	rs, _ := d.routesFor(i)
	for _, r := range rs {
		d.unref(r)
	}
}

func (d *DataPlane) unref(r tun.Route) {
	d.routes[r]--
	if d.routes[r] <= 0 {
		delete(d.routes, r)
		if err := d.nl.DelRoute(r); err != nil && !d.closed.Load() {
			d.log.Warn("esptun: delete route", "err", err)
		}
	}
}

// SAStatus is the state of one installed SA.
type SAStatus struct {
	SPI     uint32
	Inbound bool
	Active  bool // outbound: used for new packets
	// Expired: the SA reached its hard volume limit (or the end of its
	// sequence numbers) and carries no more packets.
	Expired  bool
	Mode     esp.Mode
	Encap    ike.Encapsulation
	Counters esp.Counters
}

// Status holds the SAs and the drops that belong to no SA.
type Status struct {
	SAs            []SAStatus
	NoSA           uint64 // packets from the TUN device matching no outbound SA
	UnknownSPI     uint64 // ESP for no inbound SA (or the wrong encapsulation)
	SelectorDrops  uint64 // decrypted packets outside the SA's selectors
	SendErrors     uint64
	TunWriteErrors uint64
	// LimitDrops counts packets not sent or accepted because their SA
	// reached its hard volume limit and nothing replaced it yet.
	LimitDrops uint64
	// RemovedOut and RemovedIn sum the counters of the outbound and
	// inbound SAs removed so far (deleted or rekeyed).
	RemovedOut, RemovedIn esp.Counters
}

// Status returns the counters.
func (d *DataPlane) Status() Status {
	t := d.sas.Load()
	st := Status{NoSA: d.noSA.Load(), UnknownSPI: d.noSPI.Load(), SelectorDrops: d.selectorDrops.Load(), SendErrors: d.sendErrors.Load(), TunWriteErrors: d.tunWriteErrors.Load(), LimitDrops: d.limitDrops.Load()}
	d.mu.Lock()
	st.RemovedOut, st.RemovedIn = d.removed[0], d.removed[1]
	d.mu.Unlock()
	for _, o := range t.out {
		st.SAs = append(st.SAs, SAStatus{SPI: o.info.SPI, Active: o.active.Load(), Expired: o.lim.expired(), Mode: o.mode, Encap: o.info.Encap, Counters: o.o.Counters()})
	}
	for _, in := range t.in {
		st.SAs = append(st.SAs, SAStatus{SPI: in.info.SPI, Inbound: true, Expired: in.lim.expired(), Mode: in.mode, Encap: in.info.Encap, Counters: in.in.Counters()})
	}
	return st
}

// Close stops the data plane and removes its device, routes and rules.
// Detach it from the IKE endpoint first (or close the endpoint).
func (d *DataPlane) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	if d.cfg.Endpoint != nil {
		d.cfg.Endpoint.SetESPHandler(nil)
	}
	// No grace outlives the data plane.
	d.mu.Lock()
	t := d.sas.Load()
	for _, s := range t.retiring {
		s.retire.Stop()
	}
	d.sas.Store(&tables{in: t.in, out: t.out})
	d.mu.Unlock()
	return d.release()
}

// release frees what Open acquired.
func (d *DataPlane) release() error {
	var errs []error
	// Stop the packet loops before their sockets' numbers can be reused.
	if d.dev != nil {
		errs = append(errs, d.dev.Close())
	}
	if d.rawf4 != nil {
		errs = append(errs, d.rawf4.Close())
	}
	if d.rawf6 != nil {
		errs = append(errs, d.rawf6.Close())
	}
	d.wg.Wait()
	if d.nl != nil {
		d.mu.Lock()
		for r := range d.routes {
			// Routes through the device vanish with it; deleting first
			// keeps the table clean if the device lingers.
			d.nl.DelRoute(r)
			delete(d.routes, r)
		}
		d.mu.Unlock()
		for _, r := range d.rules {
			if err := d.nl.DelRule(r); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, d.nl.Close())
	}
	return errors.Join(errs...)
}
