package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// maxInitRounds bounds IKE_SA_INIT restarts (cookie, then a different
// group, then a cookie again).
const maxInitRounds = 4

// Initiate establishes an IKE SA and one Child SA with the peer at remote
// (normally port 500) under cfg. It blocks until IKE_AUTH completes, the
// retransmission schedule runs out or ctx ends.
//
// If the IKE SA comes up but the Child SA does not (the responder refused
// the ESP proposal or the traffic selectors), Initiate returns the IKE SA
// together with an error.
func (e *Endpoint) Initiate(ctx context.Context, cfg *Config, remote netip.AddrPort) (*IKESA, error) {
	c, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	sa := newSA(e, c, true)
	sa.remote = remote
	sa.lt.origRemote = remote
	sa.local = e.localFor(remote, false)
	e.mu.Lock()
	select {
	case <-e.closed:
		e.mu.Unlock()
		return nil, ErrClosed
	default:
	}
	if len(e.sas) >= MaxSAs {
		e.mu.Unlock()
		return nil, ErrBusy
	}
	// Everything the read loop may look at is set before the SA is
	// published in e.sas.
	sa.spiI = e.newSPILocked()
	sa.log = c.Logger
	if logs(sa.log) {
		sa.log = sa.log.With("spii", fmt.Sprintf("%016x", sa.spiI), "peer", remote)
	}
	e.sas[sa.spiI] = sa
	e.mu.Unlock()

	if err := sa.initExchange(ctx); err != nil {
		sa.teardown()
		return nil, err
	}
	err = sa.authExchange(ctx)
	if sa.isEstablished() {
		defer sa.notifyEstablished()
	}
	if err != nil {
		if sa.isEstablished() {
			sa.mu.Lock()
			spi := sa.refusedChildSPI
			sa.refusedChildSPI = nil
			sa.mu.Unlock()
			if spi != nil {
				// The responder set up a Child SA we do not accept.
				if _, derr := sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: [][]byte{spi}}}); derr != nil {
					sa.log.Warn("ike: delete refused Child SA", "err", derr)
				}
			}
			return sa, err
		}
		var refused *NotifyError
		if errors.Is(err, ErrAuthentication) || !errors.As(err, &refused) && sa.authSent() {
			// The responder may consider the SA up (we could not
			// authenticate it, or ctx ended or the answer was lost
			// after it took our IKE_AUTH): tell it otherwise, or it
			// keeps the SA until its hard lifetime.
			sa.sendDelete(true)
		}
		sa.teardown()
		return nil, err
	}
	return sa, nil
}

// authSent reports whether our IKE_AUTH request went out.
func (sa *IKESA) authSent() bool {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.nextReqID > 1
}

// initExchange runs IKE_SA_INIT, following COOKIE and INVALID_KE_PAYLOAD
// answers.
func (sa *IKESA) initExchange(ctx context.Context) error {
	c := sa.cfg
	group := c.IKE[0].DH[0]
	var cookie []byte
	tried := map[uint16]bool{}
	ni, err := sa.randomBytes(nonceLen)
	if err != nil {
		return err
	}
	sa.ni = ni
	for round := 0; round < maxInitRounds; round++ {
		tried[group] = true
		kex, err := sa.initiatorKey(group)
		if err != nil {
			return err
		}
		var ps []message.Payload
		if cookie != nil {
			// RFC 7296 2.6: the cookie goes first, the rest unchanged.
			ps = append(ps, &message.Notify{Kind: message.COOKIE, Data: cookie})
		}
		srcHash := natHash(sa.spiI, 0, sa.local)
		if c.ForceEncap {
			// Pretend a NAT changed our address (strongSwan's encap=yes).
			if srcHash, err = sa.randomBytes(len(srcHash)); err != nil {
				return err
			}
		}
		ps = append(ps,
			saPayload(c.IKE, message.ProtoIKE, nil),
			&message.KE{Group: group, Data: kex.PublicKey()},
			&message.Nonce{Data: sa.ni},
			&message.Notify{Kind: message.NAT_DETECTION_SOURCE_IP, Data: srcHash},
			&message.Notify{Kind: message.NAT_DETECTION_DESTINATION_IP, Data: natHash(sa.spiI, 0, sa.remote)},
			signatureHashNotify(),
		)
		if !c.DisableFragmentation {
			ps = append(ps, fragmentationNotify())
		}
		m := &message.Message{Header: message.Header{SPIi: sa.spiI, Exchange: message.IKE_SA_INIT, Flags: message.FlagInitiator}, Payloads: ps}
		req, err := m.Encode(nil)
		if err != nil {
			return fmt.Errorf("ike: encode IKE_SA_INIT: %w", err)
		}
		in, err := sa.exchange(ctx, req, message.IKE_SA_INIT, 0)
		if err != nil {
			return err
		}
		resp, err := message.Decode(in.pkt)
		if err != nil {
			return fmt.Errorf("ike: IKE_SA_INIT response: %w: %w", ErrProtocol, err)
		}
		if n := message.FindNotify(resp.Payloads, message.COOKIE); n != nil {
			if len(n.Data) < 1 || len(n.Data) > 64 {
				return fmt.Errorf("ike: cookie of %d bytes: %w", len(n.Data), ErrProtocol)
			}
			sa.log.Debug("ike: responder demands a cookie")
			cookie = append([]byte(nil), n.Data...)
			continue
		}
		if n := message.FindNotify(resp.Payloads, message.INVALID_KE_PAYLOAD); n != nil {
			if len(n.Data) != 2 {
				return fmt.Errorf("ike: INVALID_KE_PAYLOAD with %d bytes: %w", len(n.Data), ErrProtocol)
			}
			g := binary.BigEndian.Uint16(n.Data)
			if tried[g] || !proposesGroup(c.IKE, g) {
				return fmt.Errorf("ike: responder wants group %d: %w", g, &NotifyError{Type: n.Kind, Data: n.Data})
			}
			sa.log.Debug("ike: responder wants another group", "group", g)
			group = g
			continue
		}
		for _, n := range message.Notifies(resp.Payloads) {
			if n.Kind.IsError() {
				return &NotifyError{Type: n.Kind, Data: append([]byte(nil), n.Data...)}
			}
		}
		return sa.initResponse(req, in, resp, kex)
	}
	return fmt.Errorf("ike: IKE_SA_INIT not done after %d rounds: %w", maxInitRounds, ErrProtocol)
}

// initiatorKey returns the key exchange for an IKE_SA_INIT request: from
// the configured KeyShareCache if there is one (a load generator's opt-in),
// else a fresh key pair.
func (sa *IKESA) initiatorKey(group uint16) (ikecrypto.KeyExchange, error) {
	if sa.cfg.ReuseKE != nil {
		return sa.cfg.ReuseKE.get(group, sa.rand())
	}
	return ikecrypto.GenerateKey(group, sa.rand())
}

func proposesGroup(ps []Proposal, g uint16) bool {
	for _, p := range ps {
		for _, d := range p.DH {
			if d == g {
				return true
			}
		}
	}
	return false
}

// initResponse processes a successful IKE_SA_INIT response.
func (sa *IKESA) initResponse(req []byte, in inbound, resp *message.Message, kex ikecrypto.KeyExchange) error {
	saP, _ := message.Get(resp.Payloads, message.PayloadSA).(*message.SA)
	ke, _ := message.Get(resp.Payloads, message.PayloadKE).(*message.KE)
	nr, _ := message.Get(resp.Payloads, message.PayloadNonce).(*message.Nonce)
	if saP == nil || ke == nil || nr == nil || resp.SPIr == 0 {
		return fmt.Errorf("ike: IKE_SA_INIT response lacks SA, KE, Nonce or SPI: %w", ErrProtocol)
	}
	suite, _, err := accepted(sa.cfg.IKE, saP, message.ProtoIKE)
	if err != nil {
		return err
	}
	if !nonceFits(nr.Data, suite.PRF) {
		return fmt.Errorf("ike: responder nonce of %d bytes for PRF %d: %w", len(nr.Data), suite.PRF, ErrProtocol)
	}
	if suite.DH != kex.Group() || ke.Group != kex.Group() {
		return fmt.Errorf("%w: responder chose group %d with KE for %d, we sent %d", ErrProposal, suite.DH, ke.Group, kex.Group())
	}
	gir, err := kex.SharedSecret(ke.Data)
	if err != nil {
		return err
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	sa.spiR = resp.SPIr
	sa.suite = suite
	sa.nr = append([]byte(nil), nr.Data...)
	sa.initReq, sa.initResp = req, in.pkt
	sa.nextReqID = 1
	sa.frag.on = !sa.cfg.DisableFragmentation && message.FindNotify(resp.Payloads, message.IKEV2_FRAGMENTATION_SUPPORTED) != nil
	sa.peerAuth.certRequested, sa.peerAuth.cas = peerCertReq(resp.Payloads)
	sa.peerAuth.sigHash = message.FindNotify(resp.Payloads, message.SIGNATURE_HASH_ALGORITHMS) != nil
	if err := sa.setupCrypto(gir); err != nil {
		return err
	}
	natLocal, natRemote, ok := natDetect(resp.Payloads, sa.spiI, sa.spiR, sa.local, sa.remote)
	sa.natLocal, sa.natRemote = natLocal || sa.cfg.ForceEncap, natRemote
	if ok && (sa.natLocal || sa.natRemote) {
		// RFC 7296 2.23: move to the NAT-T port for IKE_AUTH onwards.
		sa.natt = true
		sa.remote = netip.AddrPortFrom(sa.remote.Addr(), sa.cfg.RemoteNATPort)
		sa.local = sa.ep.localFor(sa.remote, true)
	} else {
		sa.natLocal, sa.natRemote = false, false
	}
	if infoOn(sa.log) {
		sa.log.Info("ike: IKE_SA_INIT done", "suite", suite.String(), "nat_local", sa.natLocal, "nat_remote", sa.natRemote)
	}
	return nil
}

// authExchange runs IKE_AUTH with a pre-shared key and sets up the Child
// SA.
func (sa *IKESA) authExchange(ctx context.Context) error {
	c := sa.cfg
	// INITIAL_CONTACT tells the peer to drop IKE SAs it still has with us
	// (RFC 7296 2.4), so send it only when we have no other with that peer.
	initialContact := !sa.ep.hasEstablished(sa.remote.Addr(), c.RemoteID, sa)
	sa.mu.Lock()
	espSPI, err := sa.newESPSPI()
	if err != nil {
		sa.mu.Unlock()
		return err
	}
	idi := &message.ID{Initiator: true, IDType: c.LocalID.Type, Data: c.LocalID.Data}
	certs, auth, err := sa.authPayloadsLocked(sa.initReq, sa.nr, sa.keys.SKpi, idi.Body())
	if err != nil {
		sa.mu.Unlock()
		return err
	}
	tsi := selectorsOr(c.LocalTS, sa.local.Addr())
	tsr := selectorsOr(c.RemoteTS, sa.remote.Addr())
	// RFC 7296 1.2 order: IDi, [CERT], [N(INITIAL_CONTACT)], [CERTREQ], [IDr], AUTH.
	ps := append([]message.Payload{idi}, certs...)
	if initialContact {
		ps = append(ps, &message.Notify{Kind: message.INITIAL_CONTACT})
	}
	if cr := certReqPayload(c); cr != nil {
		ps = append(ps, cr)
	}
	if len(c.RemoteID.Data) > 0 {
		ps = append(ps, &message.ID{IDType: c.RemoteID.Type, Data: c.RemoteID.Data})
	}
	ps = append(ps, auth)
	if c.Mode == ModeTransport {
		ps = append(ps, &message.Notify{Kind: message.USE_TRANSPORT_MODE})
	}
	ps = append(ps,
		saPayload(withoutDH(c.ESP), message.ProtoESP, espSPI),
		&message.TS{Initiator: true, Selectors: tsi},
		&message.TS{Selectors: tsr},
	)
	sa.mu.Unlock()

	resp, err := sa.request(ctx, message.IKE_AUTH, ps)
	if err != nil {
		return fmt.Errorf("ike: IKE_AUTH: %w", err)
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	idr, _ := message.Get(resp, message.PayloadIDr).(*message.ID)
	authP, _ := message.Get(resp, message.PayloadAUTH).(*message.Auth)
	if idr == nil || authP == nil {
		for _, n := range message.Notifies(resp) {
			if n.Kind.IsError() {
				return &NotifyError{Type: n.Kind, Data: n.Data}
			}
		}
		return fmt.Errorf("ike: IKE_AUTH response lacks IDr or AUTH: %w", ErrProtocol)
	}
	peer := Identity{Type: idr.IDType, Data: append([]byte(nil), idr.Data...)}
	if len(c.RemoteID.Data) > 0 && !peer.equal(c.RemoteID) {
		return fmt.Errorf("%w: responder is %v, want %v", ErrAuthentication, peer, c.RemoteID)
	}
	if err := sa.verifyPeerLocked(resp, idr, authP, sa.initResp, sa.ni, sa.keys.SKpr); err != nil {
		return err
	}
	sa.establishLocked(peer)
	if infoOn(sa.log) {
		sa.log.Info("ike: IKE SA established", "peer_id", peer.String())
	}

	for _, n := range message.Notifies(resp) {
		if n.Kind.IsError() {
			return fmt.Errorf("ike: Child SA refused: %w", &NotifyError{Type: n.Kind, Data: n.Data})
		}
	}
	espSA, _ := message.Get(resp, message.PayloadSA).(*message.SA)
	rtsi, _ := message.Get(resp, message.PayloadTSi).(*message.TS)
	rtsr, _ := message.Get(resp, message.PayloadTSr).(*message.TS)
	if espSA == nil || rtsi == nil || rtsr == nil {
		return fmt.Errorf("ike: IKE_AUTH response lacks SA or TS: %w", ErrProtocol)
	}
	suite, prop, err := accepted(withoutDH(c.ESP), espSA, message.ProtoESP)
	if err != nil {
		return fmt.Errorf("ike: Child SA: %w", err)
	}
	if len(prop.SPI) != 4 || binary.BigEndian.Uint32(prop.SPI) == 0 {
		return fmt.Errorf("ike: Child SA SPI of %d bytes: %w", len(prop.SPI), ErrProtocol)
	}
	// From here on the responder has installed the Child SA; if we refuse
	// it, Initiate deletes it there, naming it (RFC 7296 3.11) by the SPI
	// we would have received on.
	sa.refusedChildSPI = espSPI
	if !within(rtsi.Selectors, tsi) || !within(rtsr.Selectors, tsr) {
		return fmt.Errorf("%w: responder widened the traffic selectors", ErrProposal)
	}
	mode := ModeTunnel
	if message.FindNotify(resp, message.USE_TRANSPORT_MODE) != nil {
		mode = ModeTransport
	}
	if mode != c.Mode {
		return fmt.Errorf("%w: responder chose %v mode, we want %v", ErrProposal, mode, c.Mode)
	}
	child, err := sa.newChild(suite, mode, binary.BigEndian.Uint32(espSPI), binary.BigEndian.Uint32(prop.SPI), rtsi.Selectors, rtsr.Selectors, nil, sa.ni, sa.nr, true)
	if err != nil {
		return err
	}
	if err := child.register(c.Registrar); err != nil {
		return err
	}
	sa.addChildLocked(child)
	sa.refusedChildSPI = nil
	if infoOn(sa.log) {
		sa.log.Info("ike: Child SA established", "suite", suite.String(), "in", fmt.Sprintf("%08x", child.InSPI), "out", fmt.Sprintf("%08x", child.OutSPI), "encap", child.Encap)
	}
	return nil
}

// nonceFits reports whether a nonce is at least half the key size of the
// negotiated PRF (RFC 7296 2.10); the 16-byte minimum is the decoder's.
func nonceFits(n []byte, prfID uint16) bool {
	p, err := ikecrypto.LookupPRF(prfID)
	return err == nil && len(n) >= p.Size()/2
}
