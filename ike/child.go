package ike

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// ChildSA is an ESP SA pair negotiated in IKE_AUTH or CREATE_CHILD_SA.
type ChildSA struct {
	Suite  Suite
	Mode   Mode
	InSPI  uint32 // SPI of packets we receive (chosen by us)
	OutSPI uint32 // SPI of packets we send (chosen by the peer)
	// Keys of the pair; the initiator-to-responder half (EncrI/IntegI)
	// protects inbound traffic at the responder.
	Keys              *ikecrypto.ChildKeys
	LocalTS, RemoteTS []message.Selector
	Encap             Encapsulation
	// Initiated is true when this host initiated the exchange that
	// created the SA (IKE_AUTH or CREATE_CHILD_SA): then EncrI/IntegI
	// protect outbound traffic.
	Initiated bool

	rk         rekeyState  // guarded by the IKE SA's mu
	rekeyTimer *time.Timer // ChildRekeyTime; guarded by the IKE SA's mu
	hardTimer  *time.Timer // ChildLifeTime; guarded by the IKE SA's mu
	// policy is the configuration the SA was negotiated under, which its
	// rekeys use; nil: the IKE SA's Config.
	policy     *ChildConfig
	ni, nr     []byte    // nonces of the exchange that created it (CREATE_CHILD_SA)
	infos      [2]SAInfo // outbound, inbound
	registered bool
	ep         *Endpoint
	// owner is the IKE SA that negotiated it, which a data plane's
	// volume limit report goes to; limits are what the data plane counts.
	owner  *IKESA
	limits Limits
}

// newESPSPI returns a random inbound ESP SPI that no registered Child SA
// of the endpoint uses; SPIs below 256 are reserved (RFC 4303 2.1).
func (sa *IKESA) newESPSPI() ([]byte, error) {
	for {
		b, err := sa.randomBytes(4)
		if err != nil {
			return nil, err
		}
		spi := binary.BigEndian.Uint32(b)
		if spi < 256 {
			continue
		}
		sa.ep.mu.Lock()
		used := sa.ep.inSPIs[spi]
		sa.ep.mu.Unlock()
		if !used {
			return b, nil
		}
	}
}

// Infos returns the outbound and inbound SA descriptions reported to the
// registrar.
func (c *ChildSA) Infos() (out, in SAInfo) { return c.infos[0], c.infos[1] }

// newChild derives the keys of a negotiated Child SA, KEYMAT = prf+(SK_d,
// [g^ir (new) |] Ni | Nr) with the nonces of the exchange that created it,
// and describes its two directions; call with sa.mu held.
func (sa *IKESA) newChild(s Suite, mode Mode, inSPI, outSPI uint32, localTS, remoteTS []message.Selector, gir, ni, nr []byte, initiated bool) (*ChildSA, error) {
	e, err := ikecrypto.LookupEncr(s.Encr.ID)
	if err != nil {
		return nil, err
	}
	bits, err := e.CheckKeyBits(s.Encr.KeyBits)
	if err != nil {
		return nil, err
	}
	integLen, icv := 0, e.ICVLen
	if !e.AEAD {
		in, err := ikecrypto.LookupInteg(s.Integ)
		if err != nil {
			return nil, err
		}
		integLen, icv = in.KeyLen, in.ICVLen
	}
	keys, err := ikecrypto.DeriveChildKeys(sa.prf, sa.keys.SKd, gir, ni, nr, e.KeyLen(bits), integLen)
	if err != nil {
		return nil, err
	}
	c := &ChildSA{Suite: s, Mode: mode, InSPI: inSPI, OutSPI: outSPI, Keys: keys, LocalTS: localTS, RemoteTS: remoteTS, Initiated: initiated, ep: sa.ep, owner: sa, limits: sa.childLimits()}
	if sa.natLocal || sa.natRemote {
		c.Encap = EncapUDP
	}
	local, remote := sa.local, sa.remote
	base := SAInfo{
		Encap: c.Encap, EncrID: s.Encr.ID, EncrKeyBits: s.Encr.KeyBits, IntegID: s.Integ,
		Null: e.NullESP, IVLen: e.IVLen, ICVLen: icv, ESN: s.ESN, Mode: mode,
		LocalTS: localTS, RemoteTS: remoteTS,
	}
	out, in := base, base
	out.Src, out.Dst, out.SPI = local.Addr(), remote.Addr(), outSPI
	in.Src, in.Dst, in.SPI, in.Inbound = remote.Addr(), local.Addr(), inSPI, true
	if c.Encap == EncapUDP {
		// ESP-in-UDP shares the NAT-T ports with IKE (RFC 3948).
		out.SrcPort, out.DstPort = local.Port(), remote.Port()
		in.SrcPort, in.DstPort = remote.Port(), local.Port()
	}
	c.infos = [2]SAInfo{out, in}
	return c, nil
}

// register reports both directions to r; on failure nothing stays
// registered.
func (c *ChildSA) register(r SARegistrar) error {
	c.ep.mu.Lock()
	if c.ep.inSPIs[c.InSPI] {
		c.ep.mu.Unlock()
		return fmt.Errorf("ike: inbound SPI %08x already in use", c.InSPI)
	}
	c.ep.inSPIs[c.InSPI] = true
	c.ep.mu.Unlock()
	if r == nil {
		c.registered = true
		return nil
	}
	if err := c.registerSA(r, 0); err != nil {
		c.releaseSPI()
		return fmt.Errorf("ike: register outbound SA %08x: %w", c.OutSPI, err)
	}
	if err := c.registerSA(r, 1); err != nil {
		c.unregisterSA(r, 0)
		c.releaseSPI()
		return fmt.Errorf("ike: register inbound SA %08x: %w", c.InSPI, err)
	}
	c.registered = true
	return nil
}

func (c *ChildSA) unregister(r SARegistrar) {
	c.stopTimers()
	if !c.registered {
		return
	}
	c.registered = false
	c.releaseSPI()
	if r != nil {
		c.unregisterSA(r, 0)
		c.unregisterSA(r, 1)
	}
}

func (c *ChildSA) releaseSPI() {
	c.ep.mu.Lock()
	delete(c.ep.inSPIs, c.InSPI)
	c.ep.mu.Unlock()
}

// selectorsOr returns ts, or the host selector of a when ts is empty.
func selectorsOr(ts []message.Selector, a netip.Addr) []message.Selector {
	if len(ts) > 0 {
		return ts
	}
	return []message.Selector{hostSelector(a)}
}

// intersect returns the part of selector a that lies within b.
func intersect(a, b message.Selector) (message.Selector, bool) {
	if a.TSType != b.TSType || (a.TSType != message.TSIPv4AddrRange && a.TSType != message.TSIPv6AddrRange) {
		return message.Selector{}, false
	}
	r := a
	switch {
	case a.IPProto == 0:
		r.IPProto = b.IPProto
	case b.IPProto != 0 && b.IPProto != a.IPProto:
		return message.Selector{}, false
	}
	r.StartPort, r.EndPort = max(a.StartPort, b.StartPort), min(a.EndPort, b.EndPort)
	if a.StartAddr.Compare(b.StartAddr) < 0 {
		r.StartAddr = b.StartAddr
	}
	if a.EndAddr.Compare(b.EndAddr) > 0 {
		r.EndAddr = b.EndAddr
	}
	if r.StartPort > r.EndPort || r.StartAddr.Compare(r.EndAddr) > 0 {
		return message.Selector{}, false
	}
	return r, true
}

// narrow returns the intersections of the peer's proposed selectors with
// our configured ones (RFC 7296 2.9), without duplicates.
func narrow(proposed, ours []message.Selector) []message.Selector {
	var out []message.Selector
	for _, p := range proposed {
		for _, o := range ours {
			r, ok := intersect(p, o)
			if !ok {
				continue
			}
			dup := false
			for _, x := range out {
				if x.Contains(&r) {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, r)
			}
		}
	}
	return out
}

// within reports whether every selector of got lies within one of ours.
func within(got, ours []message.Selector) bool {
	if len(got) == 0 {
		return false
	}
	for i := range got {
		ok := false
		for j := range ours {
			if ours[j].Contains(&got[i]) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
