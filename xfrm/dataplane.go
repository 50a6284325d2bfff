package xfrm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/espy-dpi/espy/ike"
	"golang.org/x/sys/unix"
)

// DefaultReplayWindow is the anti-replay window of inbound SAs, in
// packets.
const DefaultReplayWindow = 128

// basePriority is the priority of the policies of a /0 to /0 selector
// pair; more specific selectors get lower (winning) values.
const basePriority = 200000

// Config configures Open.
type Config struct {
	// Endpoint is the IKE endpoint whose Child SAs the data plane
	// carries: its sockets are exempted from IPsec policies and its
	// NAT-T socket hands ESP-in-UDP to the kernel (PrepareEndpoint). It
	// may be nil.
	Endpoint *ike.Endpoint
	// ReplayWindow is the inbound anti-replay window in packets, a
	// multiple of 32 up to 4096; 0 is DefaultReplayWindow.
	ReplayWindow uint32
	Logger       *slog.Logger // nil: discard
}

// DataPlane carries Child SAs in the kernel's XFRM: it implements
// ike.DataPlane, and ike.LimitReporter through the kernel's expiries.
// It works in the network namespace of the thread that called Open.
type DataPlane struct {
	c   *Conn
	exp *ExpireListener
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	sas      map[saKey]*installed
	policies map[string]*policySet
	reqID    uint32
	closed   bool

	// removed sums the counters of the removed outbound [0] and
	// inbound [1] SAs, read from the kernel just before their deletion.
	removed [2]Totals

	handler atomic.Pointer[ike.LimitHandler]
	done    chan struct{}
}

// Totals are summed SA counters.
type Totals struct {
	Packets, Bytes                 uint64
	ReplayDrops, IntegrityFailures uint64
}

func (t *Totals) add(s SAState) {
	t.Packets += s.Packets
	t.Bytes += s.Bytes
	t.ReplayDrops += uint64(s.ReplayDrops)
	t.IntegrityFailures += uint64(s.IntegrityFailures)
}

// Removed returns the summed counters of the outbound and inbound SAs
// removed so far (deleted, rekeyed or closed).
func (d *DataPlane) Removed() (out, in Totals) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.removed[0], d.removed[1]
}

// saKey names an installed SA direction: outbound SPIs are chosen by the
// peers, so the destination tells them apart.
type saKey struct {
	spi     uint32
	inbound bool
	dst     netip.Addr
}

type installed struct {
	id       SAID
	inbound  bool
	policies *policySet
	expired  bool // hard expiry: the kernel deleted it
}

// policySet are the policies of the Child SAs with one set of selectors
// between one pair of peers, shared by rekeyed SAs through their
// request ID.
type policySet struct {
	key   string
	reqID uint32
	list  []Policy
	refs  int // installed SA directions using it
}

// Open opens the data plane, and prepares cfg.Endpoint's sockets.
func Open(cfg Config) (*DataPlane, error) {
	if cfg.ReplayWindow == 0 {
		cfg.ReplayWindow = DefaultReplayWindow
	}
	if cfg.ReplayWindow%32 != 0 || cfg.ReplayWindow > 4096 {
		return nil, fmt.Errorf("xfrm: replay window %d: want a multiple of 32 up to 4096", cfg.ReplayWindow)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := Dial()
	if err != nil {
		return nil, err
	}
	exp, err := ListenExpire()
	if err != nil {
		c.Close()
		return nil, err
	}
	d := &DataPlane{c: c, exp: exp, cfg: cfg, log: log, sas: map[saKey]*installed{}, policies: map[string]*policySet{}, done: make(chan struct{})}
	// Request IDs are global in the namespace: start at a random point
	// of the upper range, away from charon's and iproute2's small ones
	// and from another DataPlane's.
	var r [4]byte
	rand.Read(r[:])
	d.reqID = 0x10000000 + binary.BigEndian.Uint32(r[:])%0xe0000000
	if cfg.Endpoint != nil {
		if err := PrepareEndpoint(cfg.Endpoint); err != nil {
			c.Close()
			exp.Close()
			return nil, err
		}
	}
	go d.expireLoop()
	return d, nil
}

// PrepareEndpoint exempts both sockets of an IKE endpoint from the IPsec
// policies (BypassSocket) and makes its NAT-T socket hand ESP in UDP to
// the kernel (EncapSocket). Open does it for Config.Endpoint; further
// endpoints whose Child SAs the data plane carries need it too.
func PrepareEndpoint(ep *ike.Endpoint) error {
	_, natt := ep.Addrs()
	return ep.Control(func(fd uintptr) error {
		if err := BypassSocket(fd); err != nil {
			return err
		}
		// Control visits both sockets; only NAT-T's carries ESP.
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			return fmt.Errorf("xfrm: getsockname: %w", err)
		}
		if port(sa) == natt.Port() {
			return EncapSocket(fd)
		}
		return nil
	})
}

func port(sa unix.Sockaddr) uint16 {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return uint16(a.Port)
	case *unix.SockaddrInet6:
		return uint16(a.Port)
	}
	return 0
}

// String describes the data plane for logs.
func (d *DataPlane) String() string {
	return fmt.Sprintf("kernel XFRM, replay window %d", d.cfg.ReplayWindow)
}

func keyOf(i *ike.SAInfo) saKey {
	k := saKey{spi: i.SPI, inbound: i.Inbound}
	if !i.Inbound {
		k.dst = i.Dst
	}
	return k
}

// InstallSA adds one direction of a Child SA to the kernel, and the
// policies of its selectors when it is the first SA that needs them.
func (d *DataPlane) InstallSA(k ike.KeyedSA) error {
	crypt, auth, aead, err := algorithms(&k)
	if err != nil {
		return fmt.Errorf("xfrm: install SA %#x: %w", k.SPI, err)
	}
	local, remote := k.Src, k.Dst
	if k.Inbound {
		local, remote = k.Dst, k.Src
	}
	sels, err := selectorPairs(k.LocalTS, k.RemoteTS)
	if err != nil {
		return fmt.Errorf("xfrm: install SA %#x: %w", k.SPI, err)
	}
	mode := Transport
	if k.Mode == ike.ModeTunnel {
		mode = Tunnel
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("xfrm: install SA %#x: %w", k.SPI, os.ErrClosed)
	}
	key := keyOf(&k.SAInfo)
	if _, dup := d.sas[key]; dup {
		return fmt.Errorf("xfrm: install SA %#x: %w", k.SPI, ErrExists)
	}
	pkey := fmt.Sprint(local, remote, mode, sels)
	ps := d.policies[pkey]
	if ps == nil {
		d.reqID++
		ps = &policySet{key: pkey, reqID: d.reqID}
		if err := d.addPolicies(ps, sels, local, remote, mode); err != nil {
			return fmt.Errorf("xfrm: install SA %#x: %w", k.SPI, err)
		}
		d.policies[pkey] = ps
	}
	sa := &SA{Src: k.Src, Dst: k.Dst, SPI: k.SPI, Mode: mode, ReqID: ps.reqID, Crypt: crypt, Auth: auth, AEAD: aead,
		ReplayWindow: d.cfg.ReplayWindow, ESN: k.ESN,
		Limits: Lifetime{SoftBytes: k.Limits.SoftBytes, HardBytes: k.Limits.HardBytes, SoftPackets: k.Limits.SoftPackets, HardPackets: k.Limits.HardPackets}}
	if mode == Transport && len(sels) == 1 {
		// As the kernel checks it on input, like charon does.
		sa.Selector = sels[0]
		if k.Inbound {
			sa.Selector = sels[0].reverse()
		}
	}
	if k.Encap == ike.EncapUDP {
		sa.Encap = &Encap{SrcPort: k.SrcPort, DstPort: k.DstPort}
	}
	if err := d.c.AddSA(sa); err != nil {
		if ps.refs == 0 {
			d.removePolicies(ps)
		}
		return err
	}
	ps.refs++
	d.sas[key] = &installed{id: SAID{Dst: k.Dst, SPI: k.SPI}, inbound: k.Inbound, policies: ps}
	d.log.Debug("xfrm: SA installed", "spi", fmt.Sprintf("%#x", k.SPI), "inbound", k.Inbound, "mode", mode, "reqid", ps.reqID)
	return nil
}

// addPolicies installs out, in and (tunnel mode) fwd policies for the
// selectors sels (outbound view), undoing them on error.
func (d *DataPlane) addPolicies(ps *policySet, sels []Selector, local, remote netip.Addr, mode Mode) error {
	for _, s := range sels {
		prio := uint32(basePriority - 256*(s.Src.Bits()+s.Dst.Bits()))
		if s.Proto != 0 {
			prio -= 128
		}
		out := Policy{Selector: s, Dir: Out, Priority: prio, Tmpl: Template{Src: local, Dst: remote, Mode: mode, ReqID: ps.reqID}}
		in := Policy{Selector: s.reverse(), Dir: In, Priority: prio, Tmpl: Template{Src: remote, Dst: local, Mode: mode, ReqID: ps.reqID}}
		list := []Policy{out, in}
		if mode == Tunnel {
			fwd := in
			fwd.Dir = Fwd
			list = append(list, fwd)
		}
		for _, p := range list {
			if err := d.c.AddPolicy(&p, false); err != nil {
				d.removePolicies(ps)
				return err
			}
			ps.list = append(ps.list, p)
		}
	}
	return nil
}

func (d *DataPlane) removePolicies(ps *policySet) {
	for i := range ps.list {
		if err := d.c.DeletePolicy(&ps.list[i]); err != nil {
			d.log.Warn("xfrm: remove policy", "err", err)
		}
	}
	ps.list = nil
	delete(d.policies, ps.key)
}

// RemoveSA deletes one direction of a Child SA, and its policies with
// the last SA using them.
func (d *DataPlane) RemoveSA(i ike.SAInfo) {
	d.mu.Lock()
	defer d.mu.Unlock()
	key := keyOf(&i)
	sa := d.sas[key]
	if sa == nil {
		return
	}
	d.removeLocked(key, sa)
}

func (d *DataPlane) removeLocked(key saKey, sa *installed) {
	delete(d.sas, key)
	if st, err := d.c.GetSA(sa.id); err == nil {
		dir := 0
		if sa.inbound {
			dir = 1
		}
		d.removed[dir].add(st)
	}
	if err := d.c.DeleteSA(sa.id); err != nil && !(sa.expired && errors.Is(err, ErrNotFound)) {
		d.log.Warn("xfrm: remove SA", "err", err)
	}
	if sa.policies.refs--; sa.policies.refs == 0 {
		d.removePolicies(sa.policies)
	}
}

// SetLimitHandler implements ike.LimitReporter: h is told of the
// kernel's soft and hard volume expiries of the installed SAs.
func (d *DataPlane) SetLimitHandler(h ike.LimitHandler) {
	if h == nil {
		d.handler.Store(nil)
		return
	}
	d.handler.Store(&h)
}

func (d *DataPlane) expireLoop() {
	defer close(d.done)
	for {
		e, err := d.exp.Next()
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil {
			d.log.Warn("xfrm: expiry", "err", err)
			continue
		}
		d.mu.Lock()
		var found *installed
		for k, sa := range d.sas {
			if k.spi == e.State.SPI && sa.id.Dst == e.State.Dst {
				found = sa
				break
			}
		}
		if found != nil && e.Hard {
			found.expired = true
		}
		d.mu.Unlock()
		if found == nil {
			continue // another daemon's SA
		}
		if h := d.handler.Load(); h != nil {
			(*h)(e.State.SPI, found.inbound, e.Hard)
		}
	}
}

// SAStatus is the kernel's view of one installed SA direction.
type SAStatus struct {
	SPI     uint32
	Inbound bool
	State   SAState
	// Err is set when the kernel could not report the SA, e.g.
	// ErrNotFound after a hard expiry.
	Err error
}

// Status returns the kernel's counters of the installed SAs.
func (d *DataPlane) Status() []SAStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	var st []SAStatus
	for k, sa := range d.sas {
		s, err := d.c.GetSA(sa.id)
		st = append(st, SAStatus{SPI: k.spi, Inbound: k.inbound, State: s, Err: err})
	}
	return st
}

// Close removes every SA and policy the data plane installed and stops
// it. The endpoint's sockets keep their options.
func (d *DataPlane) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	for k, sa := range d.sas {
		d.removeLocked(k, sa)
	}
	d.mu.Unlock()
	d.exp.Close()
	<-d.done
	return d.c.Close()
}
