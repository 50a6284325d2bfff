package ike

import (
	"bytes"
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
	// A request of ours in flight would be lost with the old keys, unless
	// it is our own rekey of the IKE SA: then both rekeys complete and the
	// nonces decide which new SA stays (RFC 7296 2.8.2, in RekeyIKE).
	collision := false
	if !sa.reqMu.TryLock() {
		if sa.lt.rekeyNi == nil || sa.lt.peerRekey != nil {
			refuse(message.TEMPORARY_FAILURE, nil, "a request of ours is outstanding")
			return
		}
		collision = true
	} else {
		defer sa.reqMu.Unlock()
	}
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
	k, err := rekeyedIKEKeys(sa.prf, sa.keys.SKd, suite, gir, ni, nr, spiI, spiR, false)
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
	if collision {
		sa.lt.peerRekey = k
		sa.log.Info("ike: simultaneous IKE SA rekey: answered the peer's, ours is outstanding")
		return
	}
	old := sa.retireLocked()
	oldLocal := old.localSPI()
	sa.switchLocked(k)
	time.AfterFunc(retiredLinger, old.teardown)
	sa.log.Info("ike: IKE SA rekeyed by the peer", "old_local_spi", fmt.Sprintf("%016x", oldLocal), "suite", suite.String())
}

// unreserve drops the routing of SPI spi to sa, if it is still sa's.
func (e *Endpoint) unreserve(spi uint64, sa *IKESA) {
	e.mu.Lock()
	if e.sas[spi] == sa {
		delete(e.sas, spi)
	}
	e.mu.Unlock()
}

// ikeKeys is a new IKE SA negotiated by a rekey exchange.
type ikeKeys struct {
	spiI, spiR uint64
	suite      Suite
	prf        *ikecrypto.PRF
	keys       *ikecrypto.IKEKeys
	out, in    *ikecrypto.SKCipher
	ni, nr     []byte
	initiator  bool // this host initiated the rekey exchange
}

func (k *ikeKeys) localSPI() uint64 {
	if k.initiator {
		return k.spiI
	}
	return k.spiR
}

// switchLocked gives sa the SPIs and keys of the new IKE SA k; its Child
// SAs stay. Message IDs restart and the lifetimes are started anew.
func (sa *IKESA) switchLocked(k *ikeKeys) {
	sa.initiator = k.initiator
	sa.spiI, sa.spiR = k.spiI, k.spiR
	sa.suite, sa.prf, sa.keys, sa.out, sa.in = k.suite, k.prf, k.keys, k.out, k.in
	sa.ni, sa.nr = k.ni, k.nr
	sa.nextReqID, sa.peerReqID, sa.lastResp = 0, 0, nil
	sa.lt.rekeyNi, sa.lt.peerRekey, sa.lt.oldDeleted = nil, nil, false
	// sa.log keeps the first SPIs: it is read without the lock.
	sa.log.Info("ike: IKE SA now on new SPIs", "new_spii", fmt.Sprintf("%016x", k.spiI), "new_spir", fmt.Sprintf("%016x", k.spiR))
	sa.startLifetimeLocked()
}

// spareLocked returns a retired IKE SA holding the redundant SA k of a
// rekey collision, routed by its SPI, without Child SAs: its initiator
// deletes it, the other end answers that Delete with it.
func (sa *IKESA) spareLocked(k *ikeKeys) *IKESA {
	x := &IKESA{
		ep: sa.ep, cfg: sa.cfg, initiator: k.initiator, created: time.Now(),
		log:    sa.cfg.Logger.With("spii", fmt.Sprintf("%016x", k.spiI), "spir", fmt.Sprintf("%016x", k.spiR), "redundant", true),
		respCh: make(chan inbound, 4), dead: make(chan struct{}),
		state: stateEstablished, retired: true, spiI: k.spiI, spiR: k.spiR,
		local: sa.local, remote: sa.remote, natt: sa.natt, natLocal: sa.natLocal, natRemote: sa.natRemote,
		suite: k.suite, prf: k.prf, keys: k.keys, in: k.in, out: k.out, ni: k.ni, nr: k.nr, peerID: sa.peerID,
		deleteSent: !k.initiator,
	}
	sa.ep.mu.Lock()
	sa.ep.sas[k.localSPI()] = x
	sa.ep.mu.Unlock()
	return x
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
// deleted.
//
// If the peer rekeys the IKE SA at the same time and each end answers the
// other's request, the new SA created with the lowest of the four nonces
// is redundant and deleted by its initiator, and the IKESA takes the other
// (RFC 7296 2.8.2); if the peer refuses ours because its own completed,
// the IKESA takes the peer's. Either way RekeyIKE returns nil once the IKE
// SA is rekeyed.
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
	release := func() { sa.ep.unreserve(spiI, sa) }
	ni, err := sa.randomBytes(nonceLen)
	if err != nil {
		release()
		return err
	}
	reqCtx, abort := context.WithCancel(ctx)
	defer abort()
	sa.mu.Lock()
	sa.lt.rekeyNi, sa.lt.peerRekey, sa.lt.oldDeleted = ni, nil, false
	sa.lt.abortRekey = abort
	sa.mu.Unlock()
	defer func() {
		sa.mu.Lock()
		p := sa.lt.peerRekey
		sa.lt.rekeyNi, sa.lt.peerRekey, sa.lt.oldDeleted, sa.lt.abortRekey = nil, nil, false, nil
		sa.mu.Unlock()
		if p != nil {
			// The SA went before the peer's rekey could be taken.
			sa.ep.unreserve(p.spiR, sa)
		}
	}()
	// fail gives up on our rekey; if we answered the peer's meanwhile, the
	// IKE SA is rekeyed all the same.
	fail := func(err error) error {
		release()
		if sa.adoptPeerRekey() {
			return nil
		}
		return err
	}
	for round := 0; ; round++ {
		kex, err := ikecrypto.GenerateKey(group, sa.rand())
		if err != nil {
			return fail(err)
		}
		resp, err := sa.ikeRekeyRequest(ctx, reqCtx, []message.Payload{
			saPayload(sa.cfg.IKE, message.ProtoIKE, binary.BigEndian.AppendUint64(nil, spiI)),
			&message.Nonce{Data: ni},
			&message.KE{Group: group, Data: kex.PublicKey()},
		})
		if err != nil {
			return fail(fmt.Errorf("ike: IKE SA rekey: %w", err))
		}
		if n := message.FindNotify(resp, message.INVALID_KE_PAYLOAD); n != nil && round == 0 && len(n.Data) == 2 {
			if g := binary.BigEndian.Uint16(n.Data); g != group && proposesGroup(sa.cfg.IKE, g) {
				group = g
				continue
			}
		}
		for _, n := range message.Notifies(resp) {
			if n.Kind.IsError() {
				return fail(fmt.Errorf("ike: IKE SA rekey refused: %w", &NotifyError{Type: n.Kind, Data: append([]byte(nil), n.Data...)}))
			}
		}
		k, err := sa.ikeRekeyKeys(resp, kex, ni, spiI)
		if err != nil {
			return fail(err)
		}
		return sa.ikeRekeyFinish(ctx, k)
	}
}

// ikeRekeyRequest is requestHeld for our IKE SA rekey request. aborted ends
// when the peer deletes the old IKE SA meanwhile: if it answered our
// request before (a collision on its side too) and that answer was lost,
// its old SA still answers a retransmission, sent at once; otherwise no
// answer will come and RekeyIKE takes the peer's new SA.
func (sa *IKESA) ikeRekeyRequest(ctx, aborted context.Context, ps []message.Payload) ([]message.Payload, error) {
	id, pkts, err := sa.sealRequest(message.CREATE_CHILD_SA, ps)
	if err != nil {
		return nil, err
	}
	in, err := sa.exchangeAll(aborted, pkts, message.CREATE_CHILD_SA, id)
	if err != nil && aborted.Err() != nil && ctx.Err() == nil {
		last, cancel := context.WithTimeout(ctx, sa.cfg.Retransmit.interval(1))
		in, err = sa.exchangeAll(last, pkts, message.CREATE_CHILD_SA, id)
		cancel()
	}
	if err != nil {
		return nil, err
	}
	return sa.openResponse(id, in)
}

// adoptPeerRekey switches to the peer's new IKE SA that we answered while
// our rekey was outstanding, if there is one; the peer deletes the old SA.
func (sa *IKESA) adoptPeerRekey() bool {
	sa.mu.Lock()
	p, oldDeleted := sa.lt.peerRekey, sa.lt.oldDeleted
	if p == nil || sa.state != stateEstablished {
		sa.mu.Unlock()
		return false
	}
	old := sa.retireLocked()
	sa.switchLocked(p)
	sa.log.Info("ike: IKE SA rekeyed by the peer (our simultaneous rekey failed)")
	sa.mu.Unlock()
	if oldDeleted {
		old.teardown()
	} else {
		time.AfterFunc(retiredLinger, old.teardown)
	}
	return true
}

// ikeRekeyFinish installs the new IKE SA k of our rekey and deletes the SA
// that goes: the old one, or after a collision (RFC 7296 2.8.2) ours if
// it holds the lowest nonce (the peer then deletes the old one).
func (sa *IKESA) ikeRekeyFinish(ctx context.Context, k *ikeKeys) error {
	sa.mu.Lock()
	if sa.state != stateEstablished {
		sa.mu.Unlock()
		sa.ep.unreserve(k.spiI, sa)
		return ErrDeleted
	}
	p, oldDeleted := sa.lt.peerRekey, sa.lt.oldDeleted
	old := sa.retireLocked()
	if p == nil {
		old.deleteSent = false
		sa.switchLocked(k)
		sa.log.Info("ike: IKE SA rekeyed", "suite", k.suite.String())
		sa.mu.Unlock()
		return sa.deleteRetired(ctx, old, "rekeyed", nil)
	}
	ours, theirs := minBytes(k.ni, k.nr), minBytes(p.ni, p.nr)
	sa.lt.collisions++
	if bytes.Compare(ours, theirs) < 0 {
		// Ours is redundant: we delete it, the peer deletes the old SA.
		sa.lt.lastLowest = [2][]byte{ours, theirs}
		sa.switchLocked(p)
		spare := sa.spareLocked(k)
		sa.log.Info("ike: simultaneous IKE SA rekey, ours redundant")
		sa.mu.Unlock()
		if oldDeleted {
			old.teardown()
		} else {
			time.AfterFunc(retiredLinger, old.teardown)
		}
		return sa.deleteRetired(ctx, spare, "redundant", nil)
	}
	// The peer's is redundant and the peer deletes it; we delete the old.
	sa.lt.lastLowest = [2][]byte{theirs, ours}
	old.deleteSent = false
	sa.switchLocked(k)
	spare := sa.spareLocked(p)
	sa.log.Info("ike: simultaneous IKE SA rekey, the peer's redundant")
	sa.mu.Unlock()
	time.AfterFunc(retiredLinger, spare.teardown)
	// The old SA keeps answering a retransmission of the peer's rekey
	// request (its answer may have been lost) until the peer deletes its
	// redundant SA, which it does once it has the answer.
	return sa.deleteRetired(ctx, old, "rekeyed", spare.dead)
}

// deleteRetired deletes a retired IKE SA (INFORMATIONAL Delete) and drops
// it, at once or, with keep, once keep is closed (or after retiredLinger).
func (sa *IKESA) deleteRetired(ctx context.Context, x *IKESA, what string, keep <-chan struct{}) error {
	if keep == nil {
		defer x.teardown()
	} else {
		defer func() {
			go func() {
				select {
				case <-keep:
				case <-sa.ep.closed:
				case <-time.After(retiredLinger):
				}
				x.teardown()
			}()
		}()
	}
	if _, err := x.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoIKE}}); err != nil {
		return fmt.Errorf("ike: delete of the %s IKE SA: %w", what, err)
	}
	return nil
}

// ikeRekeyKeys checks the answer to our IKE SA rekey and derives the new
// SA's keys.
func (sa *IKESA) ikeRekeyKeys(resp []message.Payload, kex ikecrypto.KeyExchange, ni []byte, spiI uint64) (*ikeKeys, error) {
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
	k, err := rekeyedIKEKeys(sa.prf, sa.keys.SKd, suite, gir, ni, nrc, spiI, spiR, true)
	clear(gir)
	return k, err
}

// rekeyedIKEKeys derives the keys of a rekeyed IKE SA, SKEYSEED =
// prf(SK_d (old), g^ir (new) | Ni | Nr), with this host as the initiator
// or responder of the rekey exchange.
func rekeyedIKEKeys(oldPRF *ikecrypto.PRF, skd []byte, s Suite, gir, ni, nr []byte, spiI, spiR uint64, initiator bool) (*ikeKeys, error) {
	prf, err := ikecrypto.LookupPRF(s.PRF)
	if err != nil {
		return nil, err
	}
	e, err := ikecrypto.LookupEncr(s.Encr.ID)
	if err != nil {
		return nil, err
	}
	integLen := 0
	if !e.AEAD {
		in, err := ikecrypto.LookupInteg(s.Integ)
		if err != nil {
			return nil, err
		}
		integLen = in.KeyLen
	}
	bits, err := e.CheckKeyBits(s.Encr.KeyBits)
	if err != nil {
		return nil, err
	}
	// RFC 7296 2.18: the old SA's PRF computes SKEYSEED, the new one
	// prf+.
	seed := ikecrypto.RekeySKEYSEED(oldPRF, skd, gir, ni, nr)
	keys, err := ikecrypto.DeriveIKEKeysFromSeed(prf, seed, ni, nr, spiI, spiR, e.KeyLen(bits), integLen)
	if err != nil {
		return nil, err
	}
	eo, ao, ei, ai := keys.SKer, keys.SKar, keys.SKei, keys.SKai
	if initiator {
		eo, ao, ei, ai = ei, ai, eo, ao
	}
	out, err := ikecrypto.NewSKCipher(e.ID, bits, s.Integ, eo, ao)
	if err != nil {
		return nil, err
	}
	in, err := ikecrypto.NewSKCipher(e.ID, bits, s.Integ, ei, ai)
	if err != nil {
		return nil, err
	}
	return &ikeKeys{spiI: spiI, spiR: spiR, suite: s, prf: prf, keys: keys, out: out, in: in, ni: ni, nr: nr, initiator: initiator}, nil
}
