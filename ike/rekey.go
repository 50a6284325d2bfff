package ike

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// ErrNoChild is returned by RekeyChild for a Child SA the IKE SA does not
// carry (any more).
var ErrNoChild = errors.New("ike: no such Child SA")

// ErrRekeying is returned by RekeyChild for a Child SA that is already
// being rekeyed or replaced.
var ErrRekeying = errors.New("ike: Child SA is already being rekeyed")

// rekeyState tracks the rekeying of one (old) Child SA; guarded by the IKE
// SA's mu.
type rekeyState struct {
	rekeying bool // our CREATE_CHILD_SA for it is outstanding
	done     bool // our rekey completed; the old SA is being deleted
	// replacedBy is the Child SA the peer's rekey of this one created (we
	// answered), with the nonces of that exchange, for the collision rule
	// of RFC 7296 2.8.1.
	replacedBy     *ChildSA
	peerNi, peerNr []byte
}

// childByOutSPILocked returns the Child SA whose outbound SPI (the peer's
// inbound SPI) is spi.
func (sa *IKESA) childByOutSPILocked(spi uint32) *ChildSA {
	for _, c := range sa.children {
		if c.OutSPI == spi {
			return c
		}
	}
	return nil
}

// hasChildLocked reports whether c is one of the IKE SA's Child SAs.
func (sa *IKESA) hasChildLocked(c *ChildSA) bool {
	for _, x := range sa.children {
		if x == c {
			return true
		}
	}
	return false
}

// dropChildLocked unregisters and forgets c, if it is still there.
func (sa *IKESA) dropChildLocked(c *ChildSA) {
	for i, x := range sa.children {
		if x == c {
			sa.children = append(sa.children[:i], sa.children[i+1:]...)
			c.unregister(sa.cfg.Registrar)
			return
		}
	}
}

// createChildLocked answers a CREATE_CHILD_SA request: the rekeying of the
// IKE SA (RFC 7296 1.3.2) or of a Child SA (1.3.3), or a new Child SA
// (1.3.1).
func (sa *IKESA) createChildLocked(in inbound, ps []message.Payload) {
	if sa.state != stateEstablished {
		// Before IKE_AUTH completed there is nothing to rekey.
		sa.respondLocked(in, []message.Payload{&message.Notify{Kind: message.TEMPORARY_FAILURE}})
		return
	}
	if saP, _ := message.Get(ps, message.PayloadSA).(*message.SA); saP != nil && len(saP.Proposals) > 0 && saP.Proposals[0].Protocol == message.ProtoIKE && !sa.retired {
		sa.ikeRekeyLocked(in, ps, saP)
		return
	}
	sa.respondLocked(in, sa.rekeyAnswerLocked(ps))
}

// refuseChild logs and builds the answer refusing a CREATE_CHILD_SA request.
func (sa *IKESA) refuseChild(n message.NotifyType, data []byte, why string) []message.Payload {
	sa.log.Info("ike: CREATE_CHILD_SA refused", "notify", n, "why", why)
	return []message.Payload{&message.Notify{Kind: n, Data: data}}
}

// rekeyAnswerLocked negotiates the Child SA of a CREATE_CHILD_SA request
// (a rekey with REKEY_SA, else a new one) and returns the payloads of the
// answer (a single notify when refused).
func (sa *IKESA) rekeyAnswerLocked(ps []message.Payload) []message.Payload {
	refuse := sa.refuseChild
	saP, _ := message.Get(ps, message.PayloadSA).(*message.SA)
	if saP != nil && len(saP.Proposals) > 0 && saP.Proposals[0].Protocol == message.ProtoIKE {
		// RFC 7296 2.25: this SA is being deleted (it was rekeyed).
		return refuse(message.TEMPORARY_FAILURE, nil, "IKE SA rekeying on retired keys")
	}
	if sa.retired {
		return refuse(message.TEMPORARY_FAILURE, nil, "CREATE_CHILD_SA on a rekeyed IKE SA")
	}
	var rekey *message.Notify
	for _, n := range message.Notifies(ps) {
		if n.Kind == message.REKEY_SA {
			rekey = n
			break
		}
	}
	nonce, _ := message.Get(ps, message.PayloadNonce).(*message.Nonce)
	tsi, _ := message.Get(ps, message.PayloadTSi).(*message.TS)
	tsr, _ := message.Get(ps, message.PayloadTSr).(*message.TS)
	if saP == nil || nonce == nil || tsi == nil || tsr == nil {
		return refuse(message.INVALID_SYNTAX, nil, "CREATE_CHILD_SA request lacks SA, Nonce or TS")
	}
	if !nonceFits(nonce.Data, sa.suite.PRF) {
		return refuse(message.INVALID_SYNTAX, nil, fmt.Sprintf("nonce of %d bytes", len(nonce.Data)))
	}
	mode := ModeTunnel
	if message.FindNotify(ps, message.USE_TRANSPORT_MODE) != nil {
		mode = ModeTransport
	}
	if rekey == nil {
		return sa.newChildAnswerLocked(ps, saP, nonce, tsi, tsr, mode)
	}
	if len(rekey.SPI) != 4 {
		return refuse(message.INVALID_SYNTAX, nil, fmt.Sprintf("REKEY_SA with a %d-byte SPI", len(rekey.SPI)))
	}
	oldSPI := binary.BigEndian.Uint32(rekey.SPI)
	old := sa.childByOutSPILocked(oldSPI)
	if rekey.Protocol != message.ProtoESP || old == nil {
		return refuse(message.CHILD_SA_NOT_FOUND, nil, fmt.Sprintf("no Child SA %v/%08x", rekey.Protocol, oldSPI))
	}
	if old.rk.done || old.rk.replacedBy != nil {
		// RFC 7296 2.25: we are deleting it, or it was rekeyed already.
		return refuse(message.TEMPORARY_FAILURE, nil, fmt.Sprintf("Child SA %08x is being replaced", oldSPI))
	}
	if mode != old.Mode {
		return refuse(message.NO_PROPOSAL_CHOSEN, nil, "rekey changes the mode")
	}
	pol := sa.policyOf(old)
	child, out := sa.answerChildLocked(ps, pol, saP, nonce, tsi, tsr, mode)
	if child == nil {
		return out
	}
	old.rk.replacedBy, old.rk.peerNi, old.rk.peerNr = child, child.ni, child.nr
	sa.log.Info("ike: Child SA rekeyed by the peer", "old_in", fmt.Sprintf("%08x", old.InSPI), "in", fmt.Sprintf("%08x", child.InSPI),
		"out", fmt.Sprintf("%08x", child.OutSPI), "pfs", child.Suite.DH, "collision", old.rk.rekeying)
	return out
}

// answerChildLocked negotiates a Child SA under policy pol as the responder
// of a CREATE_CHILD_SA exchange: proposals, traffic selectors (narrowed to
// pol's), then the PFS exchange; it registers and adds the Child SA and
// returns it with the answer's payloads, or nil and a refusal.
func (sa *IKESA) answerChildLocked(ps []message.Payload, pol *ChildConfig, saP *message.SA, nonce *message.Nonce, tsi, tsr *message.TS, mode Mode) (*ChildSA, []message.Payload) {
	refuse := func(n message.NotifyType, data []byte, why string) (*ChildSA, []message.Payload) {
		return nil, sa.refuseChild(n, data, why)
	}
	suite, prop, ok := choose(pol.ESP, saP.Proposals, message.ProtoESP)
	if !ok {
		return refuse(message.NO_PROPOSAL_CHOSEN, nil, "no acceptable ESP proposal")
	}
	if len(prop.SPI) != 4 || binary.BigEndian.Uint32(prop.SPI) == 0 {
		return refuse(message.INVALID_SYNTAX, nil, fmt.Sprintf("proposal SPI of %d bytes", len(prop.SPI)))
	}
	nsi, nsr := sa.narrowTSLocked(pol.LocalTS, pol.RemoteTS, tsi.Selectors, tsr.Selectors)
	if len(nsi) == 0 || len(nsr) == 0 || len(nsi) > 255 || len(nsr) > 255 {
		return refuse(message.TS_UNACCEPTABLE, nil, "traffic selectors")
	}
	var gir []byte
	var ker *message.KE
	if suite.DH != 0 {
		ke, _ := message.Get(ps, message.PayloadKE).(*message.KE)
		if ke == nil || ke.Group != suite.DH {
			return refuse(message.INVALID_KE_PAYLOAD, binary.BigEndian.AppendUint16(nil, suite.DH), "KE for another group")
		}
		kex, err := ikecrypto.GenerateKey(suite.DH, sa.rand())
		if err != nil {
			return refuse(message.TEMPORARY_FAILURE, nil, err.Error())
		}
		if gir, err = kex.SharedSecret(ke.Data); err != nil {
			return refuse(message.INVALID_SYNTAX, nil, err.Error())
		}
		ker = &message.KE{Group: suite.DH, Data: kex.PublicKey()}
	}
	spi, err := sa.newESPSPI()
	if err != nil {
		return refuse(message.TEMPORARY_FAILURE, nil, err.Error())
	}
	nr, err := sa.randomBytes(nonceLen)
	if err != nil {
		return refuse(message.TEMPORARY_FAILURE, nil, err.Error())
	}
	ni := append([]byte(nil), nonce.Data...)
	child, err := sa.newChild(suite, mode, binary.BigEndian.Uint32(spi), binary.BigEndian.Uint32(prop.SPI), nsr, nsi, gir, ni, nr, false)
	clear(gir)
	if err != nil {
		return refuse(message.NO_PROPOSAL_CHOSEN, nil, err.Error())
	}
	child.policy, child.ni, child.nr = pol, ni, nr
	if err := child.register(sa.cfg.Registrar); err != nil {
		return refuse(message.TEMPORARY_FAILURE, nil, err.Error())
	}
	sa.addChildLocked(child)
	var out []message.Payload
	if mode == ModeTransport {
		out = append(out, &message.Notify{Kind: message.USE_TRANSPORT_MODE})
	}
	out = append(out, answerSA(suite, prop, spi), &message.Nonce{Data: nr})
	if ker != nil {
		out = append(out, ker)
	}
	return child, append(out, &message.TS{Initiator: true, Selectors: nsi}, &message.TS{Selectors: nsr})
}

// RekeyChild replaces the Child SA old with a new one negotiated in a
// CREATE_CHILD_SA exchange (RFC 7296 1.3.3, 2.8): same traffic selectors
// and mode, algorithms from Config.ESP, with a fresh Diffie-Hellman
// exchange when an ESP proposal lists PFS groups. The new SA is registered
// before the old one is deleted with an INFORMATIONAL exchange and
// unregistered. If the peer rekeyed old at the same time, the SA created
// with the lowest of the four nonces is deleted (RFC 7296 2.8.1) and
// RekeyChild returns the survivor. It blocks until the old SA is deleted.
func (sa *IKESA) RekeyChild(ctx context.Context, old *ChildSA) (*ChildSA, error) {
	return sa.rekeyChild(ctx, old, nil, nil)
}

// rekeyChild is RekeyChild proposing local and remote as TSi and TSr;
// nil: old's selectors and policy.
func (sa *IKESA) rekeyChild(ctx context.Context, old *ChildSA, local, remote []message.Selector) (*ChildSA, error) {
	sa.mu.Lock()
	switch {
	case sa.state != stateEstablished:
		sa.mu.Unlock()
		return nil, ErrDeleted
	case !sa.hasChildLocked(old):
		sa.mu.Unlock()
		return nil, ErrNoChild
	case old.rk.rekeying || old.rk.done || old.rk.replacedBy != nil:
		sa.mu.Unlock()
		return nil, ErrRekeying
	}
	old.rk.rekeying = true
	sa.mu.Unlock()
	defer func() {
		sa.mu.Lock()
		old.rk.rekeying = false
		sa.mu.Unlock()
	}()

	pol := sa.policyOf(old)
	if local == nil {
		local, remote = old.LocalTS, old.RemoteTS
	} else {
		pol = withSelectors(pol, local, remote)
	}
	st, resp, err := sa.childExchange(ctx, old, pol, local, remote, old.Mode)
	if err != nil {
		var ne *NotifyError
		if !errors.As(err, &ne) || ne.Type != message.CHILD_SA_NOT_FOUND && ne.Type != message.TEMPORARY_FAILURE {
			return nil, err
		}
		sa.mu.Lock()
		defer sa.mu.Unlock()
		if ne.Type == message.CHILD_SA_NOT_FOUND {
			// RFC 7296 2.25: the peer has no such SA (its Delete may be on
			// the way); it is gone for us too.
			sa.dropChildLocked(old)
		}
		if p := old.rk.replacedBy; p != nil && sa.hasChildLocked(p) {
			// The peer rekeyed old too and completed before it saw our
			// request, so it refused ours (RFC 7296 2.25) and deletes old
			// itself: the SA we answered is the survivor, not a failure.
			old.rk.done = true
			sa.log.Info("ike: simultaneous Child SA rekey, the peer's completed first", "notify", ne.Type,
				"survivor_in", fmt.Sprintf("%08x", p.InSPI))
			return p, nil
		}
		return nil, err
	}
	return sa.rekeyComplete(ctx, old, st, resp)
}

// childExchange runs the CREATE_CHILD_SA exchange for a new Child SA under
// pol with selectors tsi/tsr, rekeying old if it is not nil. The first
// round sends a KE for the first PFS group of pol's proposals; one
// INVALID_KE_PAYLOAD for another group we propose is followed. An error
// notify in the answer is returned as a *NotifyError.
func (sa *IKESA) childExchange(ctx context.Context, old *ChildSA, pol *ChildConfig, tsi, tsr []message.Selector, mode Mode) (*rekeyInit, []message.Payload, error) {
	group := pfsGroup(pol.ESP)
	tried := map[uint16]bool{}
	for round := 0; ; round++ {
		tried[group] = true
		ps, st, err := sa.rekeyRequest(old, pol, tsi, tsr, mode, group)
		if err != nil {
			return nil, nil, err
		}
		resp, err := sa.request(ctx, message.CREATE_CHILD_SA, ps)
		if err != nil {
			return nil, nil, fmt.Errorf("ike: CREATE_CHILD_SA: %w", err)
		}
		if n := message.FindNotify(resp, message.INVALID_KE_PAYLOAD); n != nil && round == 0 && len(n.Data) == 2 {
			g := binary.BigEndian.Uint16(n.Data)
			if !tried[g] && proposesGroup(pol.ESP, g) {
				sa.log.Debug("ike: peer wants another PFS group", "group", g)
				group = g
				continue
			}
		}
		for _, n := range message.Notifies(resp) {
			if n.Kind.IsError() {
				what := "new Child SA"
				if old != nil {
					what = "rekey"
				}
				return nil, nil, fmt.Errorf("ike: %s refused: %w", what, &NotifyError{Type: n.Kind, Data: append([]byte(nil), n.Data...)})
			}
		}
		return st, resp, nil
	}
}

// rekeyInit is our side of an outstanding CREATE_CHILD_SA exchange.
type rekeyInit struct {
	spi      []byte
	ni, nr   []byte // nr once answered
	kex      ikecrypto.KeyExchange
	pol      *ChildConfig
	tsi, tsr []message.Selector // as proposed
	mode     Mode
}

// rekeyRequest builds the CREATE_CHILD_SA request for a Child SA under pol:
// SK{[N(REKEY_SA)], [N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], TSi, TSr}, with
// REKEY_SA when old is being rekeyed.
func (sa *IKESA) rekeyRequest(old *ChildSA, pol *ChildConfig, tsi, tsr []message.Selector, mode Mode, group uint16) ([]message.Payload, *rekeyInit, error) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	st := &rekeyInit{pol: pol, tsi: tsi, tsr: tsr, mode: mode}
	var err error
	if st.spi, err = sa.newESPSPI(); err != nil {
		return nil, nil, err
	}
	if st.ni, err = sa.randomBytes(nonceLen); err != nil {
		return nil, nil, err
	}
	var ps []message.Payload
	if old != nil {
		ps = append(ps, &message.Notify{Protocol: message.ProtoESP, SPI: binary.BigEndian.AppendUint32(nil, old.InSPI), Kind: message.REKEY_SA})
	}
	if mode == ModeTransport {
		ps = append(ps, &message.Notify{Kind: message.USE_TRANSPORT_MODE})
	}
	ps = append(ps, saPayload(pol.ESP, message.ProtoESP, st.spi), &message.Nonce{Data: st.ni})
	if group != 0 {
		if st.kex, err = ikecrypto.GenerateKey(group, sa.rand()); err != nil {
			return nil, nil, err
		}
		ps = append(ps, &message.KE{Group: group, Data: st.kex.PublicKey()})
	}
	ps = append(ps, &message.TS{Initiator: true, Selectors: tsi}, &message.TS{Selectors: tsr})
	return ps, st, nil
}

// rekeyComplete checks the answer to our rekey of old, installs the new
// Child SA, resolves a simultaneous rekey and deletes the SA that goes.
func (sa *IKESA) rekeyComplete(ctx context.Context, old *ChildSA, st *rekeyInit, resp []message.Payload) (*ChildSA, error) {
	child, err := sa.rekeyInstall(old, st, resp)
	if err != nil {
		sa.mu.Lock()
		survivor := old.rk.replacedBy
		if !sa.hasChildLocked(old) && survivor != nil && sa.hasChildLocked(survivor) {
			// A simultaneous rekey that we lost: the peer's SA survives and
			// the peer has deleted old already (RFC 7296 2.8.1). Ours is
			// redundant; it was never installed here.
			old.rk.done = true
			sa.mu.Unlock()
			sa.log.Info("ike: simultaneous Child SA rekey, ours redundant", "survivor_in", fmt.Sprintf("%08x", survivor.InSPI))
			_, err = sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: [][]byte{st.spi}}})
			return survivor, err
		}
		sa.mu.Unlock()
		if errors.Is(err, errRefusedNew) {
			// The peer installed an SA we do not accept: delete it.
			if _, derr := sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: [][]byte{st.spi}}}); derr != nil {
				sa.log.Warn("ike: delete refused Child SA", "err", derr)
			}
		}
		return nil, err
	}
	sa.mu.Lock()
	survivor, gone := child, old
	if p := old.rk.replacedBy; p != nil {
		// Both sides rekeyed old (RFC 7296 2.8.1): the SA created with the
		// lowest of the four nonces is redundant, and its initiator
		// deletes it; the other initiator deletes old.
		ours := minBytes(st.ni, st.nr)
		theirs := minBytes(old.rk.peerNi, old.rk.peerNr)
		if bytes.Compare(ours, theirs) < 0 {
			survivor, gone = p, child
		}
		sa.log.Info("ike: simultaneous Child SA rekey", "ours_redundant", gone == child,
			"survivor_in", fmt.Sprintf("%08x", survivor.InSPI))
	}
	old.rk.done = true
	sa.mu.Unlock()
	if gone == child {
		// The peer deletes old.
		_, err = sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, child.InSPI)}}})
		sa.mu.Lock()
		sa.dropChildLocked(child)
		sa.mu.Unlock()
		return survivor, err
	}
	_, err = sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: [][]byte{binary.BigEndian.AppendUint32(nil, old.InSPI)}}})
	sa.mu.Lock()
	sa.dropChildLocked(old)
	sa.mu.Unlock()
	if err != nil {
		return survivor, fmt.Errorf("ike: delete of the rekeyed Child SA: %w", err)
	}
	return survivor, nil
}

// errRefusedNew marks a rekey answer we refuse after the peer installed
// the new SA.
var errRefusedNew = errors.New("ike: refused the new Child SA")

func minBytes(a, b []byte) []byte {
	if bytes.Compare(a, b) <= 0 {
		return a
	}
	return b
}

// rekeyInstall checks the CREATE_CHILD_SA response and registers the new
// Child SA.
func (sa *IKESA) rekeyInstall(old *ChildSA, st *rekeyInit, resp []message.Payload) (*ChildSA, error) {
	espSA, _ := message.Get(resp, message.PayloadSA).(*message.SA)
	nr, _ := message.Get(resp, message.PayloadNonce).(*message.Nonce)
	rtsi, _ := message.Get(resp, message.PayloadTSi).(*message.TS)
	rtsr, _ := message.Get(resp, message.PayloadTSr).(*message.TS)
	if espSA == nil || nr == nil || rtsi == nil || rtsr == nil {
		return nil, fmt.Errorf("ike: CREATE_CHILD_SA response lacks SA, Nonce or TS: %w", ErrProtocol)
	}
	suite, prop, err := accepted(st.pol.ESP, espSA, message.ProtoESP)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRefusedNew, err)
	}
	if len(prop.SPI) != 4 || binary.BigEndian.Uint32(prop.SPI) == 0 {
		return nil, fmt.Errorf("%w: SPI of %d bytes: %w", errRefusedNew, len(prop.SPI), ErrProtocol)
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.state != stateEstablished {
		// Torn down meanwhile: nothing may be registered on a dead SA.
		return nil, ErrDeleted
	}
	if !nonceFits(nr.Data, sa.suite.PRF) {
		return nil, fmt.Errorf("%w: nonce of %d bytes: %w", errRefusedNew, len(nr.Data), ErrProtocol)
	}
	var gir []byte
	if suite.DH != 0 {
		// Without PFS in the chosen proposal our KE goes unanswered.
		ke, _ := message.Get(resp, message.PayloadKE).(*message.KE)
		if st.kex == nil || ke == nil || suite.DH != st.kex.Group() || ke.Group != suite.DH {
			return nil, fmt.Errorf("%w: PFS group %d does not match our KE: %w", errRefusedNew, suite.DH, ErrProposal)
		}
		if gir, err = st.kex.SharedSecret(ke.Data); err != nil {
			return nil, fmt.Errorf("%w: %w", errRefusedNew, err)
		}
	}
	if !within(rtsi.Selectors, st.tsi) || !within(rtsr.Selectors, st.tsr) {
		return nil, fmt.Errorf("%w: responder widened the traffic selectors: %w", errRefusedNew, ErrProposal)
	}
	mode := ModeTunnel
	if message.FindNotify(resp, message.USE_TRANSPORT_MODE) != nil {
		mode = ModeTransport
	}
	if mode != st.mode {
		return nil, fmt.Errorf("%w: responder chose %v mode: %w", errRefusedNew, mode, ErrProposal)
	}
	if old != nil && !sa.hasChildLocked(old) {
		// The peer deleted old meanwhile; the new SA replaces nothing.
		return nil, fmt.Errorf("%w: %w", errRefusedNew, ErrNoChild)
	}
	nrc := append([]byte(nil), nr.Data...)
	child, err := sa.newChild(suite, mode, binary.BigEndian.Uint32(st.spi), binary.BigEndian.Uint32(prop.SPI), rtsi.Selectors, rtsr.Selectors, gir, st.ni, nrc, true)
	clear(gir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errRefusedNew, err)
	}
	st.nr = nrc
	child.policy, child.ni, child.nr = st.pol, st.ni, nrc
	if err := child.register(sa.cfg.Registrar); err != nil {
		return nil, fmt.Errorf("%w: %w", errRefusedNew, err)
	}
	sa.addChildLocked(child)
	if old != nil {
		sa.log.Info("ike: Child SA rekeyed", "old_in", fmt.Sprintf("%08x", old.InSPI), "in", fmt.Sprintf("%08x", child.InSPI),
			"out", fmt.Sprintf("%08x", child.OutSPI), "pfs", suite.DH)
	}
	return child, nil
}
