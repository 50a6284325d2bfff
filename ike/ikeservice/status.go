package ikeservice

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/ikecrypto"
	"github.com/espy-dpi/espy/ike/message"
)

// saStatus describes one IKE SA and its Child SAs; children holds the
// registration times of Child SA directions, dp the data plane's SAs.
func (s *Service) saStatus(sa *ike.IKESA, at time.Time, children map[childKey]time.Time, dp map[childKey]dpSA) IKESAStatus {
	local, remote, natt := sa.Addrs()
	spiI, spiR := sa.SPIs()
	suite := sa.Suite()
	st := IKESAStatus{
		Local: local.String(), Remote: remote.String(), PeerID: sa.PeerID().String(), Initiator: sa.Initiator(),
		SPIi: fmt.Sprintf("%016x", spiI), SPIr: fmt.Sprintf("%016x", spiR), NATT: natt,
		Encr: encrName(suite.Encr), Integ: integName(suite.Integ), PRF: prfName(suite.PRF), DH: groupName(suite.DH),
		Established: at.UTC(), ChildSAs: []ChildSAStatus{},
	}
	for _, c := range sa.Children() {
		out, in := c.Infos()
		cs := ChildSAStatus{
			SPIIn: fmt.Sprintf("%08x", c.InSPI), SPIOut: fmt.Sprintf("%08x", c.OutSPI),
			Encr: encrName(c.Suite.Encr), Integ: integName(c.Suite.Integ), DH: groupName(c.Suite.DH),
			ESN: c.Suite.ESN, Null: in.Null, Mode: c.Mode.String(), Encap: c.Encap.String(),
			LocalTS: selectorStrings(c.LocalTS), RemoteTS: selectorStrings(c.RemoteTS),
		}
		if t, ok := children[childKey{c.InSPI, true}]; ok {
			cs.Established = t.UTC()
		}
		if s.counters != nil {
			if p, b, ok := s.counters(in); ok {
				cs.PacketsIn, cs.BytesIn = &p, &b
			}
			if p, b, ok := s.counters(out); ok {
				cs.PacketsOut, cs.BytesOut = &p, &b
			}
		}
		cs.DataPlane = childDataPlane(dp, c.InSPI, c.OutSPI)
		st.ChildSAs = append(st.ChildSAs, cs)
	}
	return st
}

func sortIKESAs(sas []IKESAStatus) {
	slices.SortFunc(sas, func(a, b IKESAStatus) int { return a.Established.Compare(b.Established) })
}

func encrName(a ike.Algorithm) string {
	e, err := ikecrypto.LookupEncr(a.ID)
	if err != nil {
		return fmt.Sprintf("encr-%d", a.ID)
	}
	if a.KeyBits != 0 {
		return fmt.Sprintf("%s-%d", e.Name, a.KeyBits)
	}
	return e.Name
}

func integName(id uint16) string {
	if id == message.AUTH_NONE {
		return ""
	}
	in, err := ikecrypto.LookupInteg(id)
	if err != nil {
		return fmt.Sprintf("integ-%d", id)
	}
	return in.Name
}

func prfName(id uint16) string {
	p, err := ikecrypto.LookupPRF(id)
	if err != nil {
		return fmt.Sprintf("prf-%d", id)
	}
	return strings.TrimPrefix(p.Name, "prf-")
}

// groupNames are strongSwan's names of the groups espy supports.
var groupNames = map[uint16]string{14: "modp2048", 19: "ecp256", 20: "ecp384", 21: "ecp521", 31: "curve25519"}

func groupName(id uint16) string {
	if id == 0 {
		return ""
	}
	if n, ok := groupNames[id]; ok {
		return n
	}
	return fmt.Sprintf("group-%d", id)
}

// selectorStrings writes selectors as prefixes when they are one, else as
// address ranges, with protocol and ports when they narrow anything.
func selectorStrings(ss []message.Selector) []string {
	out := []string{}
	for _, s := range ss {
		if !s.StartAddr.IsValid() || !s.EndAddr.IsValid() {
			out = append(out, fmt.Sprintf("ts-type-%d", s.TSType))
			continue
		}
		r := s.StartAddr.String() + "-" + s.EndAddr.String()
		for bits := 0; bits <= s.StartAddr.BitLen(); bits++ {
			if p := netip.PrefixFrom(s.StartAddr, bits); p.Masked().Addr() == s.StartAddr && ike.PrefixSelector(p).EndAddr == s.EndAddr {
				r = p.String()
				break
			}
		}
		if s.IPProto != 0 || s.StartPort != 0 || s.EndPort != 65535 {
			r += fmt.Sprintf("[%d/%d-%d]", s.IPProto, s.StartPort, s.EndPort)
		}
		out = append(out, r)
	}
	return out
}
