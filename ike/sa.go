package ike

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// nonceLen is the length of our nonces: at least half the PRF key size
// (RFC 7296 2.10) for every PRF we support.
const nonceLen = 32

type saState uint8

const (
	stateInit        saState = iota // IKE_SA_INIT in progress or done, no IKE_AUTH yet
	stateEstablished                // IKE_AUTH done
	stateDead                       // deleted
)

// IKESA is one IKE security association and the Child SA it carries.
type IKESA struct {
	ep        *Endpoint
	cfg       *Config
	initiator bool
	log       *slog.Logger
	created   time.Time

	// respCh carries responses to our requests from the read loop.
	respCh chan inbound
	// reqMu keeps one request of ours outstanding at a time (window size
	// 1, RFC 7296 2.3), so that responses cannot be taken by the wrong
	// waiter.
	reqMu sync.Mutex
	// dead is closed when the SA is torn down.
	dead     chan struct{}
	deadOnce sync.Once

	mu         sync.Mutex
	state      saState
	spiI, spiR uint64
	local      netip.AddrPort // our address as used for IKE now
	remote     netip.AddrPort // the peer's address as used for IKE now
	natt       bool           // IKE runs on the NAT-T port
	natLocal   bool           // NAT detected in front of us
	natRemote  bool           // NAT detected in front of the peer
	suite      Suite
	prf        *ikecrypto.PRF
	keys       *ikecrypto.IKEKeys
	in, out    *ikecrypto.SKCipher
	ni, nr     []byte
	initReq    []byte // IKE_SA_INIT request as sent (RealMessage1)
	initResp   []byte // IKE_SA_INIT response as sent (RealMessage2)
	nextReqID  uint32 // ID of our next request
	peerReqID  uint32 // ID of the peer's next request
	// lastResp is our response to the peer's request peerReqID-1: the
	// message, or its fragments.
	lastResp [][]byte
	peerID   Identity
	// peerKeys are the entries of ep.peers that list this SA, zero if
	// none; guarded by ep.mu, not mu.
	peerKeys [2]peerKey
	// halfOpenKey is where a responder's SA is filed in ep.halfOpen
	// until IKE_AUTH; guarded by ep.mu.
	halfOpenKey halfOpenKey
	children    []*ChildSA
	deleteSent  bool
	// retired marks the old keys of a rekeyed IKE SA, kept under the old
	// SPI until the peer deletes them; not listed by IKESAs.
	retired bool
	// refusedChildSPI is our inbound SPI of a Child SA the responder
	// installed but we refused, to be deleted.
	refusedChildSPI []byte
	// frag is RFC 7383 fragmentation: negotiated or not, reassembly.
	frag fragState
	// peerAuth is what the peer said about and used in authentication.
	peerAuth peerAuth
	// lt holds lifetime timers and IKE SA rekey collision state (lifetime.go).
	lt lifecycle
}

func newSA(ep *Endpoint, cfg *Config, initiator bool) *IKESA {
	return &IKESA{
		ep: ep, cfg: cfg, initiator: initiator, created: time.Now(),
		respCh: make(chan inbound, 4), log: cfg.Logger, dead: make(chan struct{}),
	}
}

func (sa *IKESA) rand() io.Reader {
	if sa.cfg.Rand != nil {
		return sa.cfg.Rand
	}
	return rand.Reader
}

func (sa *IKESA) localSPI() uint64 {
	if sa.initiator {
		return sa.spiI
	}
	return sa.spiR
}

func (sa *IKESA) isEstablished() bool {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.state == stateEstablished
}

// SPIs returns the initiator's and the responder's IKE SPI.
func (sa *IKESA) SPIs() (spiI, spiR uint64) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.spiI, sa.spiR
}

// Suite returns the negotiated IKE SA algorithms.
func (sa *IKESA) Suite() Suite {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.suite
}

// Keys returns the IKE SA keys (for tests and for exporting to a capture
// decoder; handle with care).
func (sa *IKESA) Keys() ikecrypto.IKEKeys {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.keys == nil {
		return ikecrypto.IKEKeys{}
	}
	return *sa.keys
}

// Children returns the established Child SAs.
func (sa *IKESA) Children() []*ChildSA {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return append([]*ChildSA(nil), sa.children...)
}

// PeerID returns the identity the peer authenticated as.
func (sa *IKESA) PeerID() Identity {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.peerID
}

// Addrs returns the local and remote IKE addresses in use, and whether IKE
// moved to the NAT-T port.
func (sa *IKESA) Addrs() (local, remote netip.AddrPort, natt bool) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.local, sa.remote, sa.natt
}

// NAT reports whether a NAT was detected in front of this host or the
// peer.
func (sa *IKESA) NAT() (local, remote bool) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.natLocal, sa.natRemote
}

func (sa *IKESA) flags(response bool) message.Flags {
	var f message.Flags
	if sa.initiator {
		f |= message.FlagInitiator
	}
	if response {
		f |= message.FlagResponse
	}
	return f
}

// setupCrypto derives the keys and ciphers once g^ir is known; call with
// sa.mu held or before the SA is shared.
func (sa *IKESA) setupCrypto(gir []byte) error {
	prf, err := ikecrypto.LookupPRF(sa.suite.PRF)
	if err != nil {
		return err
	}
	e, err := ikecrypto.LookupEncr(sa.suite.Encr.ID)
	if err != nil {
		return err
	}
	integLen := 0
	if !e.AEAD {
		in, err := ikecrypto.LookupInteg(sa.suite.Integ)
		if err != nil {
			return err
		}
		integLen = in.KeyLen
	}
	bits, err := e.CheckKeyBits(sa.suite.Encr.KeyBits)
	if err != nil {
		return err
	}
	keys, err := ikecrypto.DeriveIKEKeys(prf, sa.ni, sa.nr, gir, sa.spiI, sa.spiR, e.KeyLen(bits), integLen)
	clear(gir)
	if err != nil {
		return err
	}
	ei, ai, er, ar := keys.SKei, keys.SKai, keys.SKer, keys.SKar
	if !sa.initiator {
		ei, ai, er, ar = er, ar, ei, ai
	}
	if sa.out, err = ikecrypto.NewSKCipher(e.ID, bits, sa.suite.Integ, ei, ai); err != nil {
		return err
	}
	if sa.in, err = ikecrypto.NewSKCipher(e.ID, bits, sa.suite.Integ, er, ar); err != nil {
		return err
	}
	sa.prf, sa.keys = prf, keys
	return nil
}

// seal encodes a message whose payloads all go into an SK payload.
func (sa *IKESA) seal(exch message.ExchangeType, response bool, msgID uint32, ps []message.Payload) ([]byte, error) {
	inner, first, err := message.AppendPayloads(nil, ps)
	if err != nil {
		return nil, fmt.Errorf("ike: encode %v: %w", exch, err)
	}
	n := sa.out.SealedLen(len(inner))
	total := message.HeaderLen + 4 + n
	if total > message.MaxMessageLen {
		return nil, fmt.Errorf("ike: %v message of %d bytes: %w", exch, total, message.ErrLength)
	}
	h := message.Header{SPIi: sa.spiI, SPIr: sa.spiR, NextPayload: message.PayloadSK, Exchange: exch,
		Flags: sa.flags(response), MessageID: msgID, Length: uint32(total)}
	head := message.AppendHeader(make([]byte, 0, total), &h)
	head = append(head, byte(first), 0)
	head = binary.BigEndian.AppendUint16(head, uint16(4+n))
	return sa.out.Seal(head, inner)
}

// errNotEncrypted is returned by open for messages without an SK payload.
var errNotEncrypted = errors.New("ike: message not encrypted")

// open verifies and decrypts a protected message and returns its inner
// payloads. pkt is decrypted in place.
func (sa *IKESA) open(pkt []byte) ([]message.Payload, error) {
	m, err := message.Decode(pkt)
	if err != nil {
		return nil, err
	}
	sk, ok := message.Get(m.Payloads, message.PayloadSK).(*message.SK)
	if !ok {
		if message.Get(m.Payloads, message.PayloadSKF) != nil {
			// Fragments go through defragment, never here.
			return nil, fmt.Errorf("ike: IKE fragment outside reassembly: %w", ErrProtocol)
		}
		return nil, errNotEncrypted
	}
	plain, err := sa.in.Open(pkt, len(pkt)-len(sk.Data))
	if err != nil {
		return nil, err
	}
	inner, err := message.DecodePayloads(sk.NextPayload, plain)
	if err != nil {
		return nil, fmt.Errorf("ike: decrypted %v: %w", m.Exchange, err)
	}
	return inner, nil
}

// openInbound returns the inner payloads of a received protected message:
// those reassembled from its fragments, or those of its SK payload
// (opened on a copy, as opening decrypts in place).
func (sa *IKESA) openInbound(in inbound) ([]message.Payload, error) {
	if in.frags != nil {
		inner, err := message.DecodePayloads(in.frags.first, in.frags.plain)
		if err != nil {
			return nil, fmt.Errorf("ike: reassembled %v: %w", in.hdr.Exchange, err)
		}
		return inner, nil
	}
	return sa.open(append([]byte(nil), in.pkt...))
}

// deliverResponse hands a response to the goroutine waiting for it.
func (sa *IKESA) deliverResponse(in inbound) {
	select {
	case sa.respCh <- in:
	default:
		sa.log.Debug("ike: response dropped, nobody waiting", "id", in.hdr.MessageID)
	}
}

// exchange sends a request and waits for the response with the same
// message ID, retransmitting on the configured schedule.
func (sa *IKESA) exchange(ctx context.Context, pkt []byte, exch message.ExchangeType, msgID uint32) (inbound, error) {
	return sa.exchangeAll(ctx, [][]byte{pkt}, exch, msgID)
}

// exchangeAll is exchange for a request sent as several datagrams (its
// fragments): every retransmission resends all of them (RFC 7383 2.6).
func (sa *IKESA) exchangeAll(ctx context.Context, pkts [][]byte, exch message.ExchangeType, msgID uint32) (inbound, error) {
	r := sa.cfg.Retransmit
	for n := 0; n <= r.Tries; n++ {
		sa.mu.Lock()
		remote, natt := sa.remote, sa.natt
		sa.mu.Unlock()
		if n > 0 {
			sa.log.Debug("ike: retransmit", "exchange", exch, "id", msgID, "try", n)
			sa.ep.retransmits.Add(1)
		}
		sa.sendAll(pkts, remote, natt)
		timer := time.NewTimer(r.interval(n))
	wait:
		for {
			select {
			case in := <-sa.respCh:
				if in.hdr.MessageID != msgID || in.hdr.Exchange != exch {
					continue
				}
				timer.Stop()
				return in, nil
			case <-timer.C:
				break wait
			case <-ctx.Done():
				timer.Stop()
				return inbound{}, ctx.Err()
			case <-sa.ep.closed:
				timer.Stop()
				return inbound{}, ErrClosed
			case <-sa.dead:
				timer.Stop()
				select {
				case <-sa.ep.closed:
					return inbound{}, ErrClosed
				default:
				}
				return inbound{}, ErrDeleted
			}
		}
	}
	return inbound{}, fmt.Errorf("%v request %d after %d tries: %w", exch, msgID, r.Tries+1, ErrTimeout)
}

// request runs one protected exchange as requester and returns the
// decrypted response payloads.
func (sa *IKESA) request(ctx context.Context, exch message.ExchangeType, ps []message.Payload) ([]message.Payload, error) {
	sa.reqMu.Lock()
	defer sa.reqMu.Unlock()
	return sa.requestHeld(ctx, exch, ps)
}

// requestHeld is request with sa.reqMu held by the caller.
func (sa *IKESA) requestHeld(ctx context.Context, exch message.ExchangeType, ps []message.Payload) ([]message.Payload, error) {
	id, pkts, err := sa.sealRequest(exch, ps)
	if err != nil {
		return nil, err
	}
	in, err := sa.exchangeAll(ctx, pkts, exch, id)
	if err != nil {
		return nil, err
	}
	return sa.openResponse(id, in)
}

// sealRequest takes the next message ID and seals our request with it.
// Call with sa.reqMu held.
func (sa *IKESA) sealRequest(exch message.ExchangeType, ps []message.Payload) (uint32, [][]byte, error) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.state == stateDead {
		return 0, nil, ErrDeleted
	}
	id := sa.nextReqID
	sa.nextReqID++
	pkts, err := sa.sealOut(exch, false, id, ps)
	return id, pkts, err
}

// openResponse opens the response in to our request id.
func (sa *IKESA) openResponse(id uint32, in inbound) ([]message.Payload, error) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	sa.fragDoneLocked(&sa.frag.resp, id)
	return sa.openInbound(in)
}

// openRequestLocked decrypts a protected request and, when it cannot, answers
// as RFC 7296 says: UNSUPPORTED_CRITICAL_PAYLOAD for an unknown critical
// payload, INVALID_SYNTAX for a malformed one, and silence for one that does
// not authenticate (section 2.21.2). Opening decrypts in place, so it works
// on a copy of the request's bytes. Call with sa.mu held.
func (sa *IKESA) openRequestLocked(in inbound) ([]message.Payload, error) {
	ps, err := sa.openInbound(in)
	if err == nil {
		return ps, nil
	}
	var ce *message.CriticalPayloadError
	switch {
	case errors.As(err, &ce):
		sa.respondLocked(in, []message.Payload{&message.Notify{Kind: message.UNSUPPORTED_CRITICAL_PAYLOAD, Data: []byte{byte(ce.Type)}}})
	case errors.Is(err, ikecrypto.ErrIntegrity), errors.Is(err, errNotEncrypted):
	default:
		sa.respondLocked(in, []message.Payload{&message.Notify{Kind: message.INVALID_SYNTAX}})
	}
	return nil, err
}

// respond sends (and keeps, for retransmitted requests) a protected
// response; call with sa.mu held.
func (sa *IKESA) respondLocked(in inbound, ps []message.Payload) {
	pkts, err := sa.sealOut(in.hdr.Exchange, true, in.hdr.MessageID, ps)
	if err != nil {
		sa.log.Warn("ike: build response", "err", err)
		return
	}
	sa.lastResp = pkts
	sa.peerReqID = in.hdr.MessageID + 1
	sa.fragDoneLocked(&sa.frag.req, in.hdr.MessageID)
	sa.sendAll(pkts, in.from, in.natt)
}

// establishLocked marks the SA established with the authenticated peer
// identity, as IKE_AUTH completes on either side: it enters the endpoint's
// per-peer index and its lifetime, liveness and keepalive timers start.
// Call with sa.mu held.
func (sa *IKESA) establishLocked(peer Identity) {
	sa.peerID = peer
	sa.state = stateEstablished
	sa.ep.mu.Lock()
	sa.ep.indexPeerLocked(sa)
	sa.ep.mu.Unlock()
	sa.startLifetimeLocked()
	sa.startDPD()
	sa.startKeepalive()
}

// teardown forgets the IKE SA and unregisters its Child SAs.
func (sa *IKESA) teardown() {
	sa.deadOnce.Do(func() { close(sa.dead) })
	sa.mu.Lock()
	sa.state = stateDead
	sa.releaseFragmentsLocked()
	sa.lt.stop()
	children := sa.children
	sa.children = nil
	reg := sa.cfg.Registrar
	sa.mu.Unlock()
	for _, c := range children {
		c.unregister(reg)
	}
	sa.ep.remove(sa)
}

// sendDeleteOnce sends one INFORMATIONAL Delete for the IKE SA without
// waiting for the answer (used when closing the endpoint).
func (sa *IKESA) sendDeleteOnce() { sa.sendDelete(false) }

// sendDelete sends one INFORMATIONAL Delete for the IKE SA; with force
// also before IKE_AUTH completed, as long as keys exist (an initiator that
// could not authenticate the responder, RFC 7296 2.21.2).
func (sa *IKESA) sendDelete(force bool) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.deleteSent || sa.out == nil || sa.state == stateDead || (sa.state != stateEstablished && !force) {
		return
	}
	sa.deleteSent = true
	id := sa.nextReqID
	sa.nextReqID++
	pkt, err := sa.seal(message.INFORMATIONAL, false, id, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}})
	if err == nil {
		sa.ep.send(pkt, sa.remote, sa.natt)
	}
}

// Delete deletes the IKE SA (and with it the Child SA) with an
// INFORMATIONAL exchange, waiting for the peer's answer on the
// retransmission schedule, and unregisters the Child SAs either way.
func (sa *IKESA) Delete(ctx context.Context) error {
	defer sa.teardown()
	sa.mu.Lock()
	ok := sa.state == stateEstablished && !sa.deleteSent
	busy := sa.state == stateEstablished && sa.deleteSent && !sa.retired
	sa.deleteSent = true
	sa.mu.Unlock()
	if busy {
		// Another Delete is under way, perhaps queued behind an
		// exchange: tearing down now would keep it from going out and
		// leave the SA to the peer until its hard lifetime.
		select {
		case <-sa.dead:
		case <-ctx.Done():
		}
	}
	if !ok {
		return nil
	}
	_, err := sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}})
	return err
}

// randomBytes returns n random bytes from the configured source.
func (sa *IKESA) randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(sa.rand(), b); err != nil {
		return nil, fmt.Errorf("ike: random: %w", err)
	}
	return b, nil
}

// notifyEstablished runs the configured Established callback.
func (sa *IKESA) notifyEstablished() {
	if f := sa.cfg.Established; f != nil {
		go f(sa)
	}
}
