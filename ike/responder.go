package ike

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// replyStateless answers an IKE_SA_INIT request without creating state
// (COOKIE, INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN, ...).
func (e *Endpoint) replyStateless(hdr message.Header, to netip.AddrPort, natt bool, n *message.Notify) {
	m := &message.Message{
		Header:   message.Header{SPIi: hdr.SPIi, Exchange: hdr.Exchange, Flags: message.FlagResponse, MessageID: hdr.MessageID},
		Payloads: []message.Payload{n},
	}
	pkt, err := m.Encode(nil)
	if err != nil {
		return
	}
	e.send(pkt, to, natt)
}

// handleInitRequest is the responder's side of IKE_SA_INIT.
func (e *Endpoint) handleInitRequest(pkt []byte, hdr message.Header, from netip.AddrPort, natt bool) {
	e.mu.Lock()
	cfgs := e.responder
	key := halfOpenKey{spii: hdr.SPIi, remote: from}
	if old := e.halfOpen[key]; old != nil {
		e.mu.Unlock()
		// A retransmitted request: send the same response again.
		old.mu.Lock()
		resp := old.initResp
		old.mu.Unlock()
		if resp != nil {
			e.send(resp, from, natt)
		}
		return
	}
	e.expireHalfOpenLocked()
	halfOpen := len(e.halfOpen)
	full := halfOpen >= e.lc.MaxHalfOpen || len(e.sas) >= MaxSAs
	e.mu.Unlock()
	if len(cfgs) == 0 || full {
		return
	}
	cfg := cfgs[0]
	log := cfg.Logger
	if logs(log) {
		// Only when it prints: the flood path should not pay for it.
		log = log.With("spii", fmt.Sprintf("%016x", hdr.SPIi), "peer", from)
	}
	req, err := message.Decode(pkt)
	if err != nil {
		log.Debug("ike: bad IKE_SA_INIT", "err", err)
		var ce *message.CriticalPayloadError
		switch {
		case errors.As(err, &ce):
			e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.UNSUPPORTED_CRITICAL_PAYLOAD, Data: []byte{byte(ce.Type)}})
		case errors.Is(err, message.ErrVersion):
		default:
			e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.INVALID_SYNTAX})
		}
		return
	}
	saP, _ := message.Get(req.Payloads, message.PayloadSA).(*message.SA)
	ke, _ := message.Get(req.Payloads, message.PayloadKE).(*message.KE)
	ni, _ := message.Get(req.Payloads, message.PayloadNonce).(*message.Nonce)
	if saP == nil || ke == nil || ni == nil {
		e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.INVALID_SYNTAX})
		return
	}
	if e.lc.AlwaysCookie || halfOpen >= e.lc.CookieThreshold {
		// RFC 7296 2.6: a valid cookie must be the first payload.
		c, ok := req.Payloads[0].(*message.Notify)
		if !ok || c.Kind != message.COOKIE || !e.cookies.valid(c.Data, ni.Data, from.Addr(), hdr.SPIi) {
			log.Debug("ike: demanding cookie", "half_open", halfOpen)
			e.cookiesSent.Add(1)
			e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.COOKIE, Data: e.cookies.make(ni.Data, from.Addr(), hdr.SPIi)})
			return
		}
	}
	var suite Suite
	var chosen *message.Proposal
	ok := false
	for _, c := range cfgs {
		if suite, chosen, ok = choose(c.IKE, saP.Proposals, message.ProtoIKE); ok {
			cfg = c
			break
		}
	}
	if !ok {
		log.Info("ike: no acceptable IKE proposal")
		e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.NO_PROPOSAL_CHOSEN})
		return
	}
	if !nonceFits(ni.Data, suite.PRF) {
		e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.INVALID_SYNTAX})
		return
	}
	if ke.Group != suite.DH {
		log.Debug("ike: asking for another group", "got", ke.Group, "want", suite.DH)
		e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.INVALID_KE_PAYLOAD, Data: binary.BigEndian.AppendUint16(nil, suite.DH)})
		return
	}

	sa := newSA(e, cfg, false)
	kex, err := ikecrypto.GenerateKey(suite.DH, sa.rand())
	if err != nil {
		log.Warn("ike: key generation", "err", err)
		return
	}
	gir, err := kex.SharedSecret(ke.Data)
	if err != nil {
		log.Info("ike: bad KE payload", "err", err)
		e.replyStateless(hdr, from, natt, &message.Notify{Kind: message.INVALID_SYNTAX})
		return
	}
	nr, err := sa.randomBytes(nonceLen)
	if err != nil {
		return
	}
	// Hold the SA's lock while publishing it, so that the other read
	// loop cannot act on it before it is complete.
	sa.mu.Lock()
	defer sa.mu.Unlock()
	e.mu.Lock()
	if _, dup := e.halfOpen[key]; dup {
		// The other socket's read loop raced us with a copy of the request.
		e.mu.Unlock()
		return
	}
	sa.spiR = e.newSPILocked()
	sa.spiI = hdr.SPIi
	e.sas[sa.spiR] = sa
	e.halfOpen[key] = sa
	sa.halfOpenKey = key
	e.mu.Unlock()
	sa.log = log
	if logs(log) {
		sa.log = log.With("spir", fmt.Sprintf("%016x", sa.spiR))
	}
	sa.suite = suite
	sa.ni, sa.nr = append([]byte(nil), ni.Data...), nr
	sa.remote, sa.natt = from, natt
	sa.local = e.localFor(from, natt)
	if err := sa.setupCrypto(gir); err != nil {
		sa.log.Warn("ike: key derivation", "err", err)
		go sa.teardown()
		return
	}
	// NAT detection uses the SPIs as they were in the request (SPIr 0).
	natLocal, natRemote, _ := natDetect(req.Payloads, sa.spiI, 0, sa.local, sa.remote)
	sa.natLocal, sa.natRemote = natLocal, natRemote
	// The answer carries the number of the proposal it accepts.
	saResp := saPayload([]Proposal{suiteProposal(suite)}, message.ProtoIKE, nil)
	saResp.Proposals[0].Num = chosen.Num
	resp := &message.Message{
		Header: message.Header{SPIi: sa.spiI, SPIr: sa.spiR, Exchange: message.IKE_SA_INIT, Flags: message.FlagResponse},
		Payloads: []message.Payload{
			saResp,
			&message.KE{Group: suite.DH, Data: kex.PublicKey()},
			&message.Nonce{Data: nr},
			&message.Notify{Kind: message.NAT_DETECTION_SOURCE_IP, Data: natHash(sa.spiI, sa.spiR, sa.local)},
			&message.Notify{Kind: message.NAT_DETECTION_DESTINATION_IP, Data: natHash(sa.spiI, sa.spiR, sa.remote)},
			signatureHashNotify(),
		},
	}
	sa.peerAuth.sigHash = message.FindNotify(req.Payloads, message.SIGNATURE_HASH_ALGORITHMS) != nil
	if !cfg.DisableFragmentation && message.FindNotify(req.Payloads, message.IKEV2_FRAGMENTATION_SUPPORTED) != nil {
		// RFC 7383 2.3: announced only in answer to the initiator's.
		resp.Payloads = append(resp.Payloads, fragmentationNotify())
		sa.frag.on = true
	}
	// Ask for the initiator's certificate if any configuration wants one
	// (which one applies is known only from IDi).
	for _, c := range cfgs {
		if cr := certReqPayload(c); cr != nil {
			resp.Payloads = append(resp.Payloads, cr)
			break
		}
	}
	out, err := resp.Encode(nil)
	if err != nil {
		sa.log.Warn("ike: encode IKE_SA_INIT response", "err", err)
		go sa.teardown()
		return
	}
	sa.initReq, sa.initResp = pkt, out
	sa.peerReqID = 1
	sa.lastResp = nil
	if infoOn(sa.log) {
		sa.log.Info("ike: IKE_SA_INIT answered", "suite", suite.String(), "nat_local", natLocal, "nat_remote", natRemote)
	}
	e.send(out, from, natt)
}

// suiteProposal turns a negotiated suite back into a one-choice proposal.
func suiteProposal(s Suite) Proposal {
	p := Proposal{Encr: []Algorithm{s.Encr}}
	if s.PRF != 0 {
		p.PRF = []uint16{s.PRF}
	}
	if s.Integ != message.AUTH_NONE {
		p.Integ = []uint16{s.Integ}
	}
	if s.DH != 0 {
		p.DH = []uint16{s.DH}
	}
	return p
}

// logs reports whether l prints anything at all.
func logs(l *slog.Logger) bool { return l.Enabled(context.Background(), slog.LevelError) }

// infoOn reports whether l logs at Info level: the per-SA Info lines
// format SPIs and suites, which a discarding logger should not pay for.
func infoOn(l *slog.Logger) bool { return l.Enabled(context.Background(), slog.LevelInfo) }

// expireScan is how often expireHalfOpenLocked looks at every half-open
// SA; scanning for each IKE_SA_INIT would make a flood quadratic.
const expireScan = time.Second

// expireHalfOpenLocked drops responder SAs whose IKE_AUTH never came, at
// most expireScan after their timeout.
func (e *Endpoint) expireHalfOpenLocked() {
	now := time.Now()
	if now.Sub(e.lastExpire) < expireScan {
		return
	}
	e.lastExpire = now
	limit := now.Add(-e.lc.HalfOpenTimeout)
	for k, sa := range e.halfOpen {
		if sa.created.Before(limit) {
			delete(e.halfOpen, k)
			if e.sas[sa.spiR] == sa {
				delete(e.sas, sa.spiR)
			}
		}
	}
}

// handleAuthLocked is the responder's side of IKE_AUTH; sa.mu is held.
func (sa *IKESA) handleAuthLocked(in inbound) {
	c := sa.cfg
	ps, err := sa.openRequestLocked(in)
	if err != nil {
		sa.log.Info("ike: bad IKE_AUTH request", "err", err)
		return
	}
	if in.natt && (!sa.natt || sa.remote != in.from) {
		// The initiator moved to the NAT-T port (RFC 7296 2.23): follow it.
		sa.natt, sa.remote = true, in.from
		sa.local = sa.ep.localFor(in.from, true)
	}
	fail := func(n message.NotifyType, why string) {
		sa.log.Info("ike: IKE_AUTH refused", "notify", n, "why", why)
		sa.respondLocked(in, []message.Payload{&message.Notify{Kind: n}})
		go sa.teardown()
	}
	idi, _ := message.Get(ps, message.PayloadIDi).(*message.ID)
	authP, _ := message.Get(ps, message.PayloadAUTH).(*message.Auth)
	if idi == nil || authP == nil {
		if message.Get(ps, message.PayloadEAP) != nil || idi != nil {
			fail(message.AUTHENTICATION_FAILED, "EAP is not supported")
			return
		}
		fail(message.INVALID_SYNTAX, "IKE_AUTH without IDi or AUTH")
		return
	}
	peer := Identity{Type: idi.IDType, Data: append([]byte(nil), idi.Data...)}
	// Now that the initiator has named itself, use the configuration made
	// for it.
	if nc := sa.ep.responderFor(peer, sa.suite); nc != nil && nc != c {
		c = nc
		sa.cfg = nc
	}
	if len(c.RemoteID.Data) > 0 && !peer.equal(c.RemoteID) {
		fail(message.AUTHENTICATION_FAILED, "unexpected identity "+peer.String())
		return
	}
	if err := sa.verifyPeerLocked(ps, idi, authP, sa.initReq, sa.nr, sa.keys.SKpi); err != nil {
		fail(message.AUTHENTICATION_FAILED, err.Error())
		return
	}
	idr := &message.ID{IDType: c.LocalID.Type, Data: c.LocalID.Data}
	sa.peerAuth.certRequested, sa.peerAuth.cas = peerCertReq(ps)
	certs, auth, err := sa.authPayloadsLocked(sa.initResp, sa.ni, sa.keys.SKpr, idr.Body())
	if err != nil {
		fail(message.AUTHENTICATION_FAILED, err.Error())
		return
	}
	sa.establishLocked(peer)
	if message.FindNotify(ps, message.INITIAL_CONTACT) != nil {
		// The peer has no other IKE SA with us (it restarted): drop the
		// ones we still keep for its identity (RFC 7296 2.4). Done
		// asynchronously, as it takes the other SAs' locks.
		go func(addr netip.Addr, id Identity, created time.Time) {
			for _, old := range sa.ep.established(addr, id, sa) {
				if !old.created.Before(created) {
					// Set up after this one (this goroutine may run
					// late): not what the peer's restart left behind.
					continue
				}
				old.log.Info("ike: INITIAL_CONTACT from the peer, deleting old IKE SA")
				old.teardown()
			}
		}(sa.remote.Addr(), peer, sa.created)
	}
	sa.ep.mu.Lock()
	sa.ep.dropHalfOpenLocked(sa)
	sa.ep.mu.Unlock()
	if infoOn(sa.log) {
		sa.log.Info("ike: IKE SA established", "peer_id", peer.String())
	}

	resp := append(append([]message.Payload{idr}, certs...), auth)
	childPs, err := sa.acceptChildLocked(ps)
	if err != nil {
		var ne *NotifyError
		if !errors.As(err, &ne) {
			ne = &NotifyError{Type: message.NO_PROPOSAL_CHOSEN}
		}
		sa.log.Info("ike: Child SA refused", "err", err)
		resp = append(resp, &message.Notify{Kind: ne.Type})
	} else {
		resp = append(resp, childPs...)
	}
	sa.respondLocked(in, resp)
	sa.notifyEstablished()
}

// acceptChildLocked negotiates the Child SA of an IKE_AUTH request and
// returns the payloads of the answer.
func (sa *IKESA) acceptChildLocked(ps []message.Payload) ([]message.Payload, error) {
	espSA, _ := message.Get(ps, message.PayloadSA).(*message.SA)
	tsi, _ := message.Get(ps, message.PayloadTSi).(*message.TS)
	tsr, _ := message.Get(ps, message.PayloadTSr).(*message.TS)
	if espSA == nil || tsi == nil || tsr == nil {
		return nil, &NotifyError{Type: message.INVALID_SYNTAX}
	}
	c, pol := sa.authPolicyLocked(ps, tsi, tsr)
	suite, prop, ok := choose(withoutDH(c.ESP), espSA.Proposals, message.ProtoESP)
	if !ok {
		return nil, &NotifyError{Type: message.NO_PROPOSAL_CHOSEN}
	}
	if len(prop.SPI) != 4 || binary.BigEndian.Uint32(prop.SPI) == 0 {
		return nil, &NotifyError{Type: message.INVALID_SYNTAX}
	}
	mode := ModeTunnel
	if message.FindNotify(ps, message.USE_TRANSPORT_MODE) != nil {
		mode = ModeTransport
	}
	if mode != c.Mode {
		return nil, &NotifyError{Type: message.NO_PROPOSAL_CHOSEN}
	}
	// TSi is the initiator's (our remote) side, TSr ours.
	nsi, nsr := sa.narrowTSLocked(c.LocalTS, c.RemoteTS, tsi.Selectors, tsr.Selectors)
	if len(nsi) == 0 || len(nsr) == 0 || len(nsi) > 255 || len(nsr) > 255 {
		return nil, &NotifyError{Type: message.TS_UNACCEPTABLE}
	}
	spi, err := sa.newESPSPI()
	if err != nil {
		return nil, err
	}
	child, err := sa.newChild(suite, mode, binary.BigEndian.Uint32(spi), binary.BigEndian.Uint32(prop.SPI), nsr, nsi, nil, sa.ni, sa.nr, false)
	if err != nil {
		return nil, err
	}
	child.policy = pol
	if err := child.register(c.Registrar); err != nil {
		// The flow cache could not take the SA; refuse it rather than
		// carry traffic espy cannot see.
		return nil, fmt.Errorf("%w: %w", &NotifyError{Type: message.TEMPORARY_FAILURE}, err)
	}
	sa.addChildLocked(child)
	if infoOn(sa.log) {
		sa.log.Info("ike: Child SA established", "suite", suite.String(), "in", fmt.Sprintf("%08x", child.InSPI), "out", fmt.Sprintf("%08x", child.OutSPI), "encap", child.Encap)
	}
	var out []message.Payload
	if mode == ModeTransport {
		out = append(out, &message.Notify{Kind: message.USE_TRANSPORT_MODE})
	}
	out = append(out, answerSA(suite, prop, spi), &message.TS{Initiator: true, Selectors: nsi}, &message.TS{Selectors: nsr})
	return out, nil
}

// answerSA is the responder's SA payload for the chosen ESP suite: one
// proposal numbered as the peer's, with our inbound SPI.
func answerSA(suite Suite, prop *message.Proposal, spi []byte) *message.SA {
	esp := suiteProposal(suite)
	esp.ESN = []uint16{message.ESN_NO}
	if suite.ESN {
		esp.ESN = []uint16{message.ESN_YES}
	}
	sp := saPayload([]Proposal{esp}, message.ProtoESP, spi)
	sp.Proposals[0].Num = prop.Num
	if !hasTransform(prop, message.TransformESN) {
		// Answer with exactly the transform types that were proposed.
		ts := sp.Proposals[0].Transforms
		sp.Proposals[0].Transforms = ts[:len(ts)-1]
	}
	return sp
}

func hasTransform(p *message.Proposal, t message.TransformType) bool {
	for _, x := range p.Transforms {
		if x.Type == t {
			return true
		}
	}
	return false
}
