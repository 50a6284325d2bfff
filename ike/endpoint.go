package ike

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/espy-dpi/espy/ike/message"
)

// Responder limits and defaults.
const (
	// DefaultCookieThreshold is the number of half-open IKE SAs from which
	// on the responder demands cookies (strongSwan's cookie_threshold).
	DefaultCookieThreshold = 30
	// DefaultMaxHalfOpen is the number of half-open IKE SAs beyond which
	// new IKE_SA_INIT requests are dropped.
	DefaultMaxHalfOpen = 1000
	// DefaultHalfOpenTimeout is how long a responder keeps an IKE SA whose
	// IKE_AUTH has not arrived.
	DefaultHalfOpenTimeout = 30 * time.Second
	// MaxSAs bounds the IKE SAs of one endpoint.
	MaxSAs = 65536
)

// ListenConfig says where an Endpoint listens and how its responder
// protects itself.
type ListenConfig struct {
	Addr    netip.Addr // local address; the zero Addr listens on all IPv4 addresses
	Port    uint16     // IKE port (500 in production); 0 lets the kernel pick
	NATPort uint16     // NAT-T port (4500 in production); 0 lets the kernel pick

	CookieThreshold int           // half-open SAs before cookies are required; 0: DefaultCookieThreshold
	AlwaysCookie    bool          // require cookies for every IKE_SA_INIT
	MaxHalfOpen     int           // 0: DefaultMaxHalfOpen
	HalfOpenTimeout time.Duration // 0: DefaultHalfOpenTimeout
	Workers         int           // goroutines handling received messages; 0: GOMAXPROCS
	QueueLen        int           // received messages waiting for them before drops; 0: DefaultQueueLen
	Logger          *slog.Logger  // nil: discard

	Fragments FragmentLimits // IKE fragment reassembly (RFC 7383); zero fields: defaults
}

// Endpoint is an IKEv2 speaker on one IKE socket and one NAT-T socket. It
// initiates IKE SAs with Initiate and, once Respond has been called,
// answers IKE_SA_INIT requests.
type Endpoint struct {
	ike, natt *net.UDPConn
	lc        ListenConfig
	log       *slog.Logger
	cookies   *cookieJar
	frag      fragEndpoint

	// mu guards the maps and responder. When both are needed, an
	// IKESA's mu is taken before this one, never after.
	mu        sync.Mutex
	sas       map[uint64]*IKESA // by our SPI
	halfOpen  map[halfOpenKey]*IKESA
	inSPIs    map[uint32]bool // inbound ESP SPIs of registered Child SAs
	responder []*Config
	// lastExpire is when expireHalfOpenLocked last scanned halfOpen.
	lastExpire time.Time
	// localAddrs caches localFor's route lookups for a wildcard socket.
	localAddrs map[netip.Addr]netip.Addr
	// peers counts the established, not retired IKE SAs by peer, so
	// that deciding INITIAL_CONTACT does not scan every SA.
	peers map[peerKey]int

	// work feeds received messages to the worker pool (workers.go).
	work                    chan job
	workers                 sync.WaitGroup
	stopOnce                sync.Once
	queueDrops, cookiesSent atomic.Uint64
	retransmits             atomic.Uint64

	espHandler espDemux // ESP-in-UDP consumer (a data plane), may be nil

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

type halfOpenKey struct {
	spii   uint64
	remote netip.AddrPort
}

// Listen opens the IKE and NAT-T UDP sockets and starts reading.
func Listen(lc ListenConfig) (*Endpoint, error) {
	addr := lc.Addr
	if !addr.IsValid() {
		addr = netip.IPv4Unspecified()
	}
	ike, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, lc.Port)))
	if err != nil {
		return nil, fmt.Errorf("ike: listen: %w", err)
	}
	natt, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, lc.NATPort)))
	if err != nil {
		ike.Close()
		return nil, fmt.Errorf("ike: listen NAT-T: %w", err)
	}
	return NewEndpoint(ike, natt, lc), nil
}

// NewEndpoint starts an endpoint on sockets the caller opened (for
// example inside another network namespace). The endpoint owns them from
// now on. lc's address and ports are ignored.
func NewEndpoint(ike, natt *net.UDPConn, lc ListenConfig) *Endpoint {
	if lc.CookieThreshold == 0 {
		lc.CookieThreshold = DefaultCookieThreshold
	}
	if lc.MaxHalfOpen == 0 {
		lc.MaxHalfOpen = DefaultMaxHalfOpen
	}
	if lc.HalfOpenTimeout == 0 {
		lc.HalfOpenTimeout = DefaultHalfOpenTimeout
	}
	log := lc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Endpoint{
		ike: ike, natt: natt, lc: lc, log: log, cookies: newCookieJar(),
		sas: map[uint64]*IKESA{}, halfOpen: map[halfOpenKey]*IKESA{}, inSPIs: map[uint32]bool{},
		peers:  map[peerKey]int{},
		closed: make(chan struct{}),
	}
	e.frag.init(lc.Fragments)
	e.startWorkers()
	e.wg.Add(2)
	go e.readLoop(ike, false)
	go e.readLoop(natt, true)
	return e
}

// Respond makes the endpoint answer IKE_SA_INIT requests under cfgs,
// replacing any earlier set. IKE_SA_INIT is answered under the first
// configuration with an acceptable IKE proposal; in IKE_AUTH the
// configuration is chosen by the initiator's identity: the first whose
// RemoteID matches it, else the first without RemoteID, among those that
// accept the IKE SA's algorithms.
func (e *Endpoint) Respond(cfgs ...*Config) error {
	var cs []*Config
	for i, cfg := range cfgs {
		c, err := cfg.validate()
		if err != nil {
			return fmt.Errorf("responder configuration %d: %w", i+1, err)
		}
		cs = append(cs, c)
	}
	e.mu.Lock()
	e.responder = cs
	e.mu.Unlock()
	return nil
}

// responderFor picks the configuration for an initiator that proved (or
// claims) identity id on an IKE SA using suite.
func (e *Endpoint) responderFor(id Identity, suite Suite) *Config {
	e.mu.Lock()
	cs := e.responder
	e.mu.Unlock()
	var wildcard *Config
	for _, c := range cs {
		if !acceptsSuite(c.IKE, suite) {
			continue
		}
		if len(c.RemoteID.Data) == 0 {
			if wildcard == nil {
				wildcard = c
			}
			continue
		}
		if c.RemoteID.equal(id) {
			return c
		}
	}
	return wildcard
}

// Addrs returns the local addresses of the IKE and NAT-T sockets.
func (e *Endpoint) Addrs() (ike, natt netip.AddrPort) {
	return e.ike.LocalAddr().(*net.UDPAddr).AddrPort(), e.natt.LocalAddr().(*net.UDPAddr).AddrPort()
}

// IKESAs returns the endpoint's IKE SAs that completed IKE_AUTH.
func (e *Endpoint) IKESAs() []*IKESA {
	// Lock order is sa.mu before e.mu, so collect first, then look.
	e.mu.Lock()
	all := make([]*IKESA, 0, len(e.sas))
	for _, sa := range e.sas {
		all = append(all, sa)
	}
	e.mu.Unlock()
	var out []*IKESA
	for _, sa := range all {
		sa.mu.Lock()
		ok := sa.state == stateEstablished && !sa.retired
		sa.mu.Unlock()
		if ok {
			out = append(out, sa)
		}
	}
	return out
}

// Close tells every established peer that its IKE SA is gone (one
// unacknowledged INFORMATIONAL Delete), unregisters all Child SAs and
// closes the sockets.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() { close(e.closed) })
	e.mu.Lock()
	sas := make([]*IKESA, 0, len(e.sas))
	for _, sa := range e.sas {
		sas = append(sas, sa)
	}
	e.mu.Unlock()
	for _, sa := range sas {
		sa.sendDeleteOnce()
		sa.teardown()
	}
	err := errors.Join(e.ike.Close(), e.natt.Close())
	e.wg.Wait()
	e.stopWorkers()
	return err
}

func (e *Endpoint) readLoop(c *net.UDPConn, natt bool) {
	defer e.wg.Done()
	buf := make([]byte, message.MaxMessageLen+len(nonESPMarker))
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-e.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.log.Warn("ike: read", "err", err)
			continue
		}
		pkt := buf[:n]
		if natt {
			// On the NAT-T port, IKE carries a non-ESP marker; anything
			// else is ESP-in-UDP or a keepalive (one byte).
			if n < len(nonESPMarker) || !bytes.Equal(pkt[:4], nonESPMarker) {
				if h := e.espHandler.Load(); h != nil && n > len(nonESPMarker) {
					(*h)(pkt, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
				}
				continue
			}
			pkt = pkt[4:]
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		e.enqueue(pkt, from, natt)
	}
}

// send writes one IKE message, with the non-ESP marker on the NAT-T port.
func (e *Endpoint) send(pkt []byte, to netip.AddrPort, natt bool) {
	c := e.ike
	if natt {
		c = e.natt
		pkt = append(append(make([]byte, 0, len(pkt)+4), nonESPMarker...), pkt...)
	}
	if _, err := c.WriteToUDPAddrPort(pkt, to); err != nil {
		e.log.Warn("ike: send", "to", to, "err", err)
	}
}

// localFor returns the local address packets to remote leave from, on the
// IKE or NAT-T socket: the bound address, or the route's source address
// when bound to a wildcard.
func (e *Endpoint) localFor(remote netip.AddrPort, natt bool) netip.AddrPort {
	ike, nt := e.Addrs()
	ap := ike
	if natt {
		ap = nt
	}
	a := ap.Addr().Unmap()
	if a.IsUnspecified() {
		a = e.routeSource(remote, a)
	}
	return netip.AddrPortFrom(a, ap.Port())
}

// maxLocalAddrs bounds the route lookup cache of localFor.
const maxLocalAddrs = 4096

// routeSource returns the source address the kernel picks towards remote
// (def if it has no route). Asking costs a socket, so answers are cached,
// and the cache is emptied when it reaches maxLocalAddrs peers.
func (e *Endpoint) routeSource(remote netip.AddrPort, def netip.Addr) netip.Addr {
	e.mu.Lock()
	a, ok := e.localAddrs[remote.Addr()]
	e.mu.Unlock()
	if ok {
		return a
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(remote))
	if err != nil {
		return def
	}
	a = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	c.Close()
	e.mu.Lock()
	if e.localAddrs == nil || len(e.localAddrs) >= maxLocalAddrs {
		e.localAddrs = map[netip.Addr]netip.Addr{}
	}
	e.localAddrs[remote.Addr()] = a
	e.mu.Unlock()
	return a
}

// newSPI returns a fresh nonzero SPI not in use; call with e.mu held.
func (e *Endpoint) newSPILocked() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic("ike: crypto/rand failed: " + err.Error())
		}
		spi := binary.BigEndian.Uint64(b[:])
		if _, used := e.sas[spi]; spi != 0 && !used {
			return spi
		}
	}
}

func (e *Endpoint) remove(sa *IKESA) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sas[sa.localSPI()] == sa {
		delete(e.sas, sa.localSPI())
	}
	e.unindexPeerLocked(sa)
	e.dropHalfOpenLocked(sa)
}

// dropHalfOpenLocked forgets sa as a half-open SA, by the key it was
// filed under rather than by a scan of every half-open SA (which a flood
// makes many); call with e.mu held.
func (e *Endpoint) dropHalfOpenLocked(sa *IKESA) {
	if e.halfOpen[sa.halfOpenKey] == sa {
		delete(e.halfOpen, sa.halfOpenKey)
	}
}

// handle dispatches one received IKE message.
func (e *Endpoint) handle(pkt []byte, from netip.AddrPort, natt bool) {
	hdr, err := message.DecodeHeader(pkt)
	if errors.Is(err, message.ErrVersion) && hdr.MajorVersion > 2 && !hdr.IsResponse() && hdr.Exchange == message.IKE_SA_INIT {
		// RFC 7296 2.5: tell a newer peer which version we speak; the
		// answer carries our version, 2.
		e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.INVALID_MAJOR_VERSION})
		return
	}
	if err != nil || int(hdr.Length) != len(pkt) {
		e.log.Debug("ike: drop datagram", "from", from, "err", err)
		return
	}
	// The I flag names the sender's role: from the original initiator our
	// SPI is SPIr, from the original responder it is SPIi.
	if hdr.IsInitiator() && !hdr.IsResponse() && hdr.Exchange == message.IKE_SA_INIT && hdr.SPIr == 0 && hdr.MessageID == 0 {
		e.handleInitRequest(pkt, hdr, from, natt)
		return
	}
	local := hdr.SPIi
	if hdr.IsInitiator() {
		local = hdr.SPIr
	}
	e.mu.Lock()
	sa := e.sas[local]
	e.mu.Unlock()
	if sa == nil {
		e.log.Debug("ike: unknown SPI", "spii", hdr.SPIi, "spir", hdr.SPIr, "from", from)
		return
	}
	in := inbound{pkt: pkt, hdr: hdr, from: from, natt: natt}
	if hdr.NextPayload == message.PayloadSKF {
		var ok bool
		if in, ok = sa.defragment(in); !ok {
			return
		}
	}
	if hdr.IsResponse() {
		sa.deliverResponse(in)
		return
	}
	sa.handleRequest(in)
}

// inbound is one received message.
type inbound struct {
	pkt  []byte
	hdr  message.Header
	from netip.AddrPort
	natt bool
	// frags is set when the message arrived in fragments (RFC 7383);
	// pkt is then its last fragment.
	frags *reassembled
}

// peerKey names a peer in Endpoint.peers: its address and, unless id is
// empty (the entry that matches any identity), its authenticated identity.
type peerKey struct {
	addr   netip.Addr
	idType message.IDType
	id     string
}

// indexPeerLocked counts sa, just established, under its peer's address
// and identity. Call with sa.mu and e.mu held; sa.remote and sa.peerID do
// not change once the SA is established.
func (e *Endpoint) indexPeerLocked(sa *IKESA) {
	if sa.retired || sa.peerKeys[0].addr.IsValid() || e.sas[sa.localSPI()] != sa {
		// Retired copies are never listed; an SA no longer routed was
		// torn down already, and remove would not uncount it.
		return
	}
	addr := sa.remote.Addr()
	sa.peerKeys = [2]peerKey{{addr: addr}, {addr: addr, idType: sa.peerID.Type, id: string(sa.peerID.Data)}}
	for _, k := range sa.peerKeys {
		e.peers[k]++
	}
}

// unindexPeerLocked uncounts sa; call with e.mu held.
func (e *Endpoint) unindexPeerLocked(sa *IKESA) {
	if !sa.peerKeys[0].addr.IsValid() {
		return
	}
	for _, k := range sa.peerKeys {
		// Deleted at zero, so that peers long gone take no memory.
		if e.peers[k]--; e.peers[k] <= 0 {
			delete(e.peers, k)
		}
	}
}

// othersLocked returns the number of established IKE SAs other than
// except whose peer is at addr and, if id is set, authenticated as id;
// call with e.mu held.
func (e *Endpoint) othersLocked(addr netip.Addr, id Identity, except *IKESA) int {
	k := peerKey{addr: addr}
	if len(id.Data) > 0 {
		k.idType, k.id = id.Type, string(id.Data)
	}
	n := e.peers[k]
	if except != nil && except.peerKeys[0].addr.IsValid() && (except.peerKeys[0] == k || except.peerKeys[1] == k) {
		n--
	}
	return n
}

// hasEstablished reports whether there is an established IKE SA other
// than except whose peer is at addr and, if id is set, authenticated as
// id. A count look-up rather than a scan of every SA: it runs on every
// handshake we initiate.
func (e *Endpoint) hasEstablished(addr netip.Addr, id Identity, except *IKESA) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.othersLocked(addr, id, except) > 0
}

// established returns the established IKE SAs other than except whose
// peer is at addr and, if id is set, authenticated as id. The count
// answers the usual case, none, without scanning every SA.
func (e *Endpoint) established(addr netip.Addr, id Identity, except *IKESA) []*IKESA {
	e.mu.Lock()
	n := e.othersLocked(addr, id, except)
	e.mu.Unlock()
	if n == 0 {
		return nil
	}
	var out []*IKESA
	for _, sa := range e.IKESAs() {
		if sa == except {
			continue
		}
		sa.mu.Lock()
		match := sa.remote.Addr() == addr && (len(id.Data) == 0 || sa.peerID.equal(id))
		sa.mu.Unlock()
		if match {
			out = append(out, sa)
		}
	}
	return out
}
