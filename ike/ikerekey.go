package ike

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// retiredLinger is how long the old keys of a rekeyed IKE SA stay to
// answer the peer's Delete of it.
const retiredLinger = 60 * time.Second

// ikeRekeyLocked answers a CREATE_CHILD_SA request that rekeys the IKE SA
// (RFC 7296 1.3.2, 2.18). The IKESA object keeps its identity and its
// Child SAs and takes the new SPIs, keys and message IDs, with the peer as
// the new SA's initiator; a retired copy with the old SPI and keys stays
// to answer retransmissions and the peer's Delete of the old SA.
func (sa *IKESA) ikeRekeyLocked(in inbound, ps []message.Payload, saP *message.SA) {
	refuse := func(n message.NotifyType, data []byte, why string) {
		sa.log.Info("ike: IKE SA rekey refused", "notify", n, "why", why)
		sa.respondLocked(in, []message.Payload{&message.Notify{Kind: n, Data: data}})
	}
	nonce, _ := message.Get(ps, message.PayloadNonce).(*message.Nonce)
	ke, _ := message.Get(ps, message.PayloadKE).(*message.KE)
	if nonce == nil || ke == nil {
		refuse(message.INVALID_SYNTAX, nil, "IKE rekey without Nonce or KE")
		return
	}
	suite, prop, ok := choose(sa.cfg.IKE, saP.Proposals, message.ProtoIKE)
	if !ok {
		refuse(message.NO_PROPOSAL_CHOSEN, nil, "no acceptable IKE proposal")
		return
	}
	if len(prop.SPI) != 8 || binary.BigEndian.Uint64(prop.SPI) == 0 || !nonceFits(nonce.Data, suite.PRF) {
		refuse(message.INVALID_SYNTAX, nil, "IKE rekey SPI or nonce")
		return
	}
	if ke.Group != suite.DH {
		refuse(message.INVALID_KE_PAYLOAD, binary.BigEndian.AppendUint16(nil, suite.DH), "KE for another group")
		return
	}
	// A request of ours in flight would be lost with the old keys.
	if !sa.reqMu.TryLock() {
		refuse(message.TEMPORARY_FAILURE, nil, "a request of ours is outstanding")
		return
	}
	defer sa.reqMu.Unlock()
	kex, err := ikecrypto.GenerateKey(suite.DH, sa.rand())
	if err != nil {
		refuse(message.TEMPORARY_FAILURE, nil, err.Error())
		return
	}
	gir, err := kex.SharedSecret(ke.Data)
	if err != nil {
		refuse(message.INVALID_SYNTAX, nil, err.Error())
		return
	}
	nr, err := sa.randomBytes(nonceLen)
	if err != nil {
		refuse(message.TEMPORARY_FAILURE, nil, err.Error())
		return
	}
	ni := append([]byte(nil), nonce.Data...)
	spiI := binary.BigEndian.Uint64(prop.SPI)
	sa.ep.mu.Lock()
	spiR := sa.ep.newSPILocked()
	sa.ep.sas[spiR] = sa // reserved; routed here only once the peer uses it
	sa.ep.mu.Unlock()
	keys, out, inC, prf, err := rekeyedIKEKeys(sa.prf, sa.keys.SKd, suite, gir, ni, nr, spiI, spiR, false)
	clear(gir)
	if err != nil {
		sa.ep.mu.Lock()
		delete(sa.ep.sas, spiR)
		sa.ep.mu.Unlock()
		refuse(message.NO_PROPOSAL_CHOSEN, nil, err.Error())
		return
	}
	saResp := saPayload([]Proposal{suiteProposal(suite)}, message.ProtoIKE, binary.BigEndian.AppendUint64(nil, spiR))
	saResp.Proposals[0].Num = prop.Num
	sa.respondLocked(in, []message.Payload{saResp, &message.Nonce{Data: nr}, &message.KE{Group: suite.DH, Data: kex.PublicKey()}})

	old := sa.retireLocked()
	oldLocal := old.localSPI()
	sa.initiator = false
	sa.spiI, sa.spiR = spiI, spiR
	sa.suite, sa.prf, sa.keys, sa.out, sa.in = suite, prf, keys, out, inC
	sa.ni, sa.nr = ni, nr
	sa.nextReqID, sa.peerReqID, sa.lastResp = 0, 0, nil
	sa.log = sa.cfg.Logger.With("spii", fmt.Sprintf("%016x", spiI), "spir", fmt.Sprintf("%016x", spiR), "peer", sa.remote)
	time.AfterFunc(retiredLinger, old.teardown)
	sa.log.Info("ike: IKE SA rekeyed by the peer", "old_local_spi", fmt.Sprintf("%016x", oldLocal), "suite", suite.String())
}

// retireLocked makes a copy of the IKE SA's current keys and state
// (without Child SAs) that answers on the current SPI from now on, and
// returns it; the caller then gives sa its new SPIs and keys.
func (sa *IKESA) retireLocked() *IKESA {
	old := &IKESA{
		ep: sa.ep, cfg: sa.cfg, initiator: sa.initiator, log: sa.log.With("retired", true), created: sa.created,
		respCh: make(chan inbound, 4), dead: make(chan struct{}),
		state: stateEstablished, retired: true, spiI: sa.spiI, spiR: sa.spiR,
		local: sa.local, remote: sa.remote, natt: sa.natt, natLocal: sa.natLocal, natRemote: sa.natRemote,
		suite: sa.suite, prf: sa.prf, keys: sa.keys, in: sa.in, out: sa.out, ni: sa.ni, nr: sa.nr,
		nextReqID: sa.nextReqID, peerReqID: sa.peerReqID, lastResp: sa.lastResp, peerID: sa.peerID,
		deleteSent: true, // only the rekey's initiator deletes it
	}
	sa.ep.mu.Lock()
	sa.ep.sas[sa.localSPI()] = old
	sa.ep.mu.Unlock()
	return old
}

// RekeyIKE rekeys the IKE SA with a CREATE_CHILD_SA exchange (RFC 7296
// 1.3.2, 2.18): new SPIs, nonces and Diffie-Hellman (the current group
// first, then one INVALID_KE_PAYLOAD), keys from the old SK_d; the IKESA
// keeps its Child SAs and becomes the new SA's initiator. The old SA is then
// deleted. A simultaneous rekey by the peer makes both fail with
// TEMPORARY_FAILURE (no collision resolution for IKE SAs yet).
func (sa *IKESA) RekeyIKE(ctx context.Context) error {
	sa.reqMu.Lock()
	defer sa.reqMu.Unlock()
	sa.mu.Lock()
	if sa.state != stateEstablished || sa.retired {
		sa.mu.Unlock()
		return ErrDeleted
	}
	group := sa.suite.DH
	sa.mu.Unlock()
	sa.ep.mu.Lock()
	spiI := sa.ep.newSPILocked()
	sa.ep.sas[spiI] = sa // reserved; the peer uses it once rekeyed
	sa.ep.mu.Unlock()
	release := func() {
		sa.ep.mu.Lock()
		if sa.ep.sas[spiI] == sa {
			delete(sa.ep.sas, spiI)
		}
		sa.ep.mu.Unlock()
	}
	ni, err := sa.randomBytes(nonceLen)
	if err != nil {
		release()
		return err
	}
	for round := 0; ; round++ {
		kex, err := ikecrypto.GenerateKey(group, sa.rand())
		if err != nil {
			release()
			return err
		}
		resp, err := sa.requestHeld(ctx, message.CREATE_CHILD_SA, []message.Payload{
			saPayload(sa.cfg.IKE, message.ProtoIKE, binary.BigEndian.AppendUint64(nil, spiI)),
			&message.Nonce{Data: ni},
			&message.KE{Group: group, Data: kex.PublicKey()},
		})
		if err != nil {
			release()
			return fmt.Errorf("ike: IKE SA rekey: %w", err)
		}
		if n := message.FindNotify(resp, message.INVALID_KE_PAYLOAD); n != nil && round == 0 && len(n.Data) == 2 {
			if g := binary.BigEndian.Uint16(n.Data); g != group && proposesGroup(sa.cfg.IKE, g) {
				group = g
				continue
			}
		}
		for _, n := range message.Notifies(resp) {
			if n.Kind.IsError() {
				release()
				return fmt.Errorf("ike: IKE SA rekey refused: %w", &NotifyError{Type: n.Kind, Data: append([]byte(nil), n.Data...)})
			}
		}
		old, err := sa.ikeRekeyed(resp, kex, ni, spiI)
		if err != nil {
			release()
			return err
		}
		// The old SA is ours to delete; its Child SAs live on in sa.
		defer old.teardown()
		_, err = old.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}})
		if err != nil {
			return fmt.Errorf("ike: delete of the rekeyed IKE SA: %w", err)
		}
		return nil
	}
}

// ikeRekeyed checks the answer to our IKE SA rekey and switches sa to the
// new SA, returning the retired old one.
func (sa *IKESA) ikeRekeyed(resp []message.Payload, kex ikecrypto.KeyExchange, ni []byte, spiI uint64) (*IKESA, error) {
	saP, _ := message.Get(resp, message.PayloadSA).(*message.SA)
	nr, _ := message.Get(resp, message.PayloadNonce).(*message.Nonce)
	ke, _ := message.Get(resp, message.PayloadKE).(*message.KE)
	if saP == nil || nr == nil || ke == nil {
		return nil, fmt.Errorf("ike: IKE SA rekey response lacks SA, Nonce or KE: %w", ErrProtocol)
	}
	suite, prop, err := accepted(sa.cfg.IKE, saP, message.ProtoIKE)
	if err != nil {
		return nil, err
	}
	if len(prop.SPI) != 8 || binary.BigEndian.Uint64(prop.SPI) == 0 || !nonceFits(nr.Data, suite.PRF) {
		return nil, fmt.Errorf("ike: IKE SA rekey response SPI or nonce: %w", ErrProtocol)
	}
	if suite.DH != kex.Group() || ke.Group != suite.DH {
		return nil, fmt.Errorf("%w: IKE SA rekey group %d, KE %d, we sent %d", ErrProposal, suite.DH, ke.Group, kex.Group())
	}
	gir, err := kex.SharedSecret(ke.Data)
	if err != nil {
		return nil, err
	}
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.state != stateEstablished {
		return nil, ErrDeleted
	}
	nrc := append([]byte(nil), nr.Data...)
	spiR := binary.BigEndian.Uint64(prop.SPI)
	keys, out, in, prf, err := rekeyedIKEKeys(sa.prf, sa.keys.SKd, suite, gir, ni, nrc, spiI, spiR, true)
	clear(gir)
	if err != nil {
		return nil, err
	}
	old := sa.retireLocked()
	old.deleteSent = false
	sa.initiator = true
	sa.spiI, sa.spiR = spiI, spiR
	sa.suite, sa.prf, sa.keys, sa.out, sa.in = suite, prf, keys, out, in
	sa.ni, sa.nr = ni, nrc
	sa.nextReqID, sa.peerReqID, sa.lastResp = 0, 0, nil
	sa.log = sa.cfg.Logger.With("spii", fmt.Sprintf("%016x", spiI), "spir", fmt.Sprintf("%016x", spiR), "peer", sa.remote)
	sa.log.Info("ike: IKE SA rekeyed", "suite", suite.String())
	return old, nil
}

// rekeyedIKEKeys derives the keys of a rekeyed IKE SA, SKEYSEED =
// prf(SK_d (old), g^ir (new) | Ni | Nr), with this host as the initiator
// or responder of the rekey exchange, and returns them with our outbound
// and inbound ciphers and the new PRF.
func rekeyedIKEKeys(oldPRF *ikecrypto.PRF, skd []byte, s Suite, gir, ni, nr []byte, spiI, spiR uint64, initiator bool) (*ikecrypto.IKEKeys, *ikecrypto.SKCipher, *ikecrypto.SKCipher, *ikecrypto.PRF, error) {
	prf, err := ikecrypto.LookupPRF(s.PRF)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	e, err := ikecrypto.LookupEncr(s.Encr.ID)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	integLen := 0
	if !e.AEAD {
		in, err := ikecrypto.LookupInteg(s.Integ)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		integLen = in.KeyLen
	}
	bits, err := e.CheckKeyBits(s.Encr.KeyBits)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	// RFC 7296 2.18: the old SA's PRF computes SKEYSEED, the new one
	// prf+.
	seed := ikecrypto.RekeySKEYSEED(oldPRF, skd, gir, ni, nr)
	keys, err := ikecrypto.DeriveIKEKeysFromSeed(prf, seed, ni, nr, spiI, spiR, e.KeyLen(bits), integLen)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	eo, ao, ei, ai := keys.SKer, keys.SKar, keys.SKei, keys.SKai
	if initiator {
		eo, ao, ei, ai = ei, ai, eo, ao
	}
	out, err := ikecrypto.NewSKCipher(e.ID, bits, s.Integ, eo, ao)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	in, err := ikecrypto.NewSKCipher(e.ID, bits, s.Integ, ei, ai)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return keys, out, in, prf, nil
}
