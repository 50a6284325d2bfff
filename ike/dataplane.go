package ike

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

// KeyedSA is one direction of a Child SA with what a data plane needs to
// process its packets: the wire description and the keys.
type KeyedSA struct {
	SAInfo
	// EncrKey is the encryption key followed by the salt or nonce
	// (AES-CTR, AES-GCM, AES-GMAC, ChaCha20-Poly1305) as KEYMAT gives it;
	// empty for ENCR_NULL.
	EncrKey  []byte
	IntegKey []byte // empty for combined-mode algorithms
	// PairSPI is the SPI of the other direction of the same Child SA, so
	// that a data plane can tell when a rekeyed pair carries traffic.
	PairSPI uint32
	// Initiated is true when this host initiated the exchange that
	// created the SA. A responder's new outbound SA should wait until
	// the peer, which installs its SAs only on the response, uses the
	// pair (RFC 7296 2.8).
	Initiated bool
	// Limits are the volume limits of this direction; zero fields are
	// off. Only a data plane that implements LimitReporter counts them.
	Limits Limits
}

// Limits are the volume limits of one direction of a Child SA (Config's
// ChildRekeyBytes and so on, with jitter applied). Bytes are ESP payload
// bytes: the inner packet in tunnel mode, the transport payload otherwise.
type Limits struct {
	SoftBytes, HardBytes     uint64
	SoftPackets, HardPackets uint64
}

// LimitHandler is told once per SA direction when it crosses its soft
// (hard false) or hard (hard true) volume limit. It runs on a packet
// goroutine and must not block.
type LimitHandler func(spi uint32, inbound, hard bool)

// LimitReporter is implemented by a data plane that counts the volume
// limits of KeyedSA.Limits (and its own, before the sequence number runs
// out). After the hard limit it sends no more packets on an outbound SA.
// WithDataPlane sets the handler; nil removes it.
type LimitReporter interface {
	SetLimitHandler(LimitHandler)
}

// DataPlane carries the traffic of Child SAs: Linux XFRM, or espy's
// userspace ESP over a TUN device (package esptun). The stack calls it like
// an SARegistrar, with keys: InstallSA for both directions of each Child
// SA (outbound, then inbound, in one go) before the SA is used, RemoveSA when it is deleted
// or replaced by a rekey. An error from InstallSA fails the Child SA.
type DataPlane interface {
	InstallSA(KeyedSA) error
	RemoveSA(SAInfo)
}

// WithDataPlane returns a registrar that installs each Child SA in dp
// and then reports it to r (which may be nil). Use it as Config.Registrar.
func WithDataPlane(r SARegistrar, dp DataPlane) SARegistrar {
	d := &dataPlaneRegistrar{next: r, dp: dp, children: map[saKey]*ChildSA{}}
	if lr, ok := dp.(LimitReporter); ok {
		lr.SetLimitHandler(d.limitReached)
	}
	return d
}

type dataPlaneRegistrar struct {
	next SARegistrar
	dp   DataPlane
	// children maps the installed SA directions to their Child SA, for
	// the data plane's limit reports.
	mu       sync.Mutex
	children map[saKey]*ChildSA
}

// saKey names one installed direction. Outbound SPIs are chosen by the
// peers, so the destination tells those of different peers apart.
type saKey struct {
	spi     uint32
	inbound bool
	dst     netip.Addr
}

func keyOf(i SAInfo) saKey {
	k := saKey{spi: i.SPI, inbound: i.Inbound}
	if !i.Inbound {
		k.dst = i.Dst
	}
	return k
}

// limitReached hands a limit report to the Child SA's IKE SA. It runs on
// a packet goroutine, so the exchange it causes gets its own.
func (d *dataPlaneRegistrar) limitReached(spi uint32, inbound, hard bool) {
	d.mu.Lock()
	var c *ChildSA
	for k, v := range d.children {
		// The report names no destination: an outbound SPI shared
		// by two peers' SAs is rare, and either rekey is harmless.
		if k.spi == spi && k.inbound == inbound {
			c = v
			break
		}
	}
	d.mu.Unlock()
	if c == nil || c.owner == nil {
		return
	}
	go c.owner.childLimitReached(c, hard)
}

func (d *dataPlaneRegistrar) RegisterSA(SAInfo) error {
	// Not used: register calls installSA with the keys instead.
	return nil
}

func (d *dataPlaneRegistrar) UnregisterSA(SAInfo) {}

func (d *dataPlaneRegistrar) installSA(k KeyedSA, c *ChildSA) error {
	// Known before the data plane can report a limit of it.
	d.mu.Lock()
	d.children[keyOf(k.SAInfo)] = c
	d.mu.Unlock()
	if err := d.dp.InstallSA(k); err != nil {
		d.forget(k.SAInfo)
		return err
	}
	if d.next != nil {
		if err := d.next.RegisterSA(k.SAInfo); err != nil {
			d.dp.RemoveSA(k.SAInfo)
			d.forget(k.SAInfo)
			return err
		}
	}
	return nil
}

func (d *dataPlaneRegistrar) forget(i SAInfo) {
	d.mu.Lock()
	delete(d.children, keyOf(i))
	d.mu.Unlock()
}

func (d *dataPlaneRegistrar) removeSA(i SAInfo) {
	if d.next != nil {
		d.next.UnregisterSA(i)
	}
	d.dp.RemoveSA(i)
	d.forget(i)
}

// registerSA reports direction dir (0 outbound, 1 inbound) of c to r,
// with keys when r carries a data plane.
func (c *ChildSA) registerSA(r SARegistrar, dir int) error {
	d, ok := r.(*dataPlaneRegistrar)
	if !ok {
		return r.RegisterSA(c.infos[dir])
	}
	k := KeyedSA{SAInfo: c.infos[dir], PairSPI: c.infos[1-dir].SPI, Initiated: c.Initiated, Limits: c.limits}
	// EncrI/IntegI protect initiator-to-responder traffic: our outbound
	// when we initiated the exchange that created the SA.
	if (dir == 0) == c.Initiated {
		k.EncrKey, k.IntegKey = c.Keys.EncrI, c.Keys.IntegI
	} else {
		k.EncrKey, k.IntegKey = c.Keys.EncrR, c.Keys.IntegR
	}
	return d.installSA(k, c)
}

func (c *ChildSA) unregisterSA(r SARegistrar, dir int) {
	if d, ok := r.(*dataPlaneRegistrar); ok {
		d.removeSA(c.infos[dir])
		return
	}
	r.UnregisterSA(c.infos[dir])
}

// ESPHandler receives the ESP-in-UDP datagrams (RFC 3948) arriving on an
// endpoint's NAT-T port, without the UDP header. pkt is only valid during
// the call and may be modified in place.
type ESPHandler func(pkt []byte, from netip.AddrPort)

// SetESPHandler makes the endpoint pass ESP-in-UDP datagrams (those on the
// NAT-T port without the non-ESP marker, other than keepalives) to h; nil
// drops them again. h runs on the NAT-T read goroutine.
func (e *Endpoint) SetESPHandler(h ESPHandler) {
	if h == nil {
		e.espHandler.Store(nil)
		return
	}
	e.espHandler.Store(&h)
}

// WriteESP sends an ESP packet UDP-encapsulated from the NAT-T port, as
// RFC 3948 requires for ESP of SAs negotiated there.
func (e *Endpoint) WriteESP(pkt []byte, to netip.AddrPort) error {
	_, err := e.natt.WriteToUDPAddrPort(pkt, to)
	return err
}

// Control runs f on the file descriptors of the IKE and NAT-T sockets,
// for example to set SO_MARK so that a data plane's routing leaves IKE
// and ESP-in-UDP alone.
func (e *Endpoint) Control(f func(fd uintptr) error) error {
	for _, c := range []syscall.Conn{e.ike, e.natt} {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var ferr error
		if err := rc.Control(func(fd uintptr) { ferr = f(fd) }); err != nil {
			return err
		}
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

// espDemux is what the NAT-T read loop consults for non-IKE datagrams.
type espDemux = atomic.Pointer[ESPHandler]
