package ike

import (
	"net/netip"
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
	return &dataPlaneRegistrar{next: r, dp: dp}
}

type dataPlaneRegistrar struct {
	next SARegistrar
	dp   DataPlane
}

func (d *dataPlaneRegistrar) RegisterSA(SAInfo) error {
	// Not used: register calls installSA with the keys instead.
	return nil
}

func (d *dataPlaneRegistrar) UnregisterSA(SAInfo) {}

func (d *dataPlaneRegistrar) installSA(k KeyedSA) error {
	if err := d.dp.InstallSA(k); err != nil {
		return err
	}
	if d.next != nil {
		if err := d.next.RegisterSA(k.SAInfo); err != nil {
			d.dp.RemoveSA(k.SAInfo)
			return err
		}
	}
	return nil
}

func (d *dataPlaneRegistrar) removeSA(i SAInfo) {
	if d.next != nil {
		d.next.UnregisterSA(i)
	}
	d.dp.RemoveSA(i)
}

// registerSA reports direction dir (0 outbound, 1 inbound) of c to r,
// with keys when r carries a data plane.
func (c *ChildSA) registerSA(r SARegistrar, dir int) error {
	d, ok := r.(*dataPlaneRegistrar)
	if !ok {
		return r.RegisterSA(c.infos[dir])
	}
	k := KeyedSA{SAInfo: c.infos[dir], PairSPI: c.infos[1-dir].SPI, Initiated: c.Initiated}
	// EncrI/IntegI protect initiator-to-responder traffic: our outbound
	// when we initiated the exchange that created the SA.
	if (dir == 0) == c.Initiated {
		k.EncrKey, k.IntegKey = c.Keys.EncrI, c.Keys.IntegI
	} else {
		k.EncrKey, k.IntegKey = c.Keys.EncrR, c.Keys.IntegR
	}
	return d.installSA(k)
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
