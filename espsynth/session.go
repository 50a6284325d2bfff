package espsynth

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// session is a running Flow: its two SAs, the outer paths of both
// directions, the inner addresses and the conversation.
type session struct {
	flow      Flow
	sa        [2]*sa
	path      [2]path
	inner     [2]netip.Addr // tunnel mode: inner hosts
	innerID   [2]uint16
	conv      *conv
	remaining int
	dummies   [2]int
}

// newSession keys a flow's SAs and starts its conversation. taken holds the
// flow keys already in use, so that no (src, dst, SPI) repeats.
func newSession(r *rand.Rand, f Flow, taken map[flowKey]bool) (*session, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if f.Outer == 0 {
		f.Outer = IPv4
	}
	if f.Inner == 0 {
		f.Inner = IPv4
	}
	if !f.Initiator.IsValid() {
		f.Initiator = randAddr(r, f.Outer)
		for {
			f.Responder = randAddr(r, f.Outer)
			if f.Responder != f.Initiator {
				break
			}
		}
	}
	s := &session{flow: f, conv: newConv(r, f.Traffic), remaining: f.Packets}
	ends := [2]netip.Addr{f.Initiator, f.Responder}
	for side := range f.sas() {
		src, dst := ends[side], ends[1-side]
		spi := f.SPI[side]
		for spi == 0 || taken[flowKey{src, dst, spi}] {
			if f.SPI[side] != 0 {
				return nil, fmt.Errorf("flow %v > %v SPI %#x is already in use", src, dst, spi)
			}
			spi = 256 + r.Uint32N(1<<32-256)
		}
		taken[flowKey{src, dst, spi}] = true
		a, err := newSA(r, src, dst, spi, f.Cipher, f.Auth, f.ICVLen)
		if err != nil {
			return nil, err
		}
		s.sa[side] = a
	}
	for side := range 2 {
		s.path[side] = newPath(ends[side], ends[1-side])
		s.inner[side] = randAddr(r, f.Inner)
	}
	if f.OneWay {
		// Only the initiator speaks: no handshake to wait for.
		s.conv.skipHandshake()
	}
	if f.Encap == EncapUDP {
		ports := [2]uint16{4500, 4500}
		if f.NAT {
			ports[0] = uint16(1024 + r.IntN(64000))
		}
		for side := range 2 {
			s.path[side].udp = true
			s.path[side].sport, s.path[side].dport = ports[side], ports[1-side]
		}
	}
	return s, nil
}

// flowKey identifies an ESP flow on the wire.
type flowKey struct {
	src, dst netip.Addr
	spi      uint32
}

// randAddr draws a host address from the documentation prefixes: one of
// 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24, or 2001:db8::/32.
func randAddr(r *rand.Rand, v IPVersion) netip.Addr {
	if v.is6() {
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		fillRand(r, b[4:])
		if r.IntN(2) == 0 {
			// Half of them look like hand-numbered hosts (2001:db8:x:y::z).
			clear(b[8:14])
		}
		if b[15] == 0 {
			b[15] = 1
		}
		return netip.AddrFrom16(b)
	}
	nets := [3][3]byte{{192, 0, 2}, {198, 51, 100}, {203, 0, 113}}
	n := nets[r.IntN(3)]
	return netip.AddrFrom4([4]byte{n[0], n[1], n[2], byte(1 + r.IntN(254))})
}

// appendPacket appends the session's next ESP frame.
func (s *session) appendPacket(dst []byte, r *rand.Rand) []byte {
	side := s.conv.nextSide(r, s.flow.OneWay)
	if s.remaining == 1 && !s.flow.OneWay {
		// Both SAs of a two-way session appear on the wire.
		for i, a := range s.sa {
			if a.seq == 0 {
				side = i
			}
		}
	}
	s.remaining--
	a, p := s.sa[side], &s.path[side]
	dst, ipOff := p.open(dst, protoESP)
	dst, espOff := a.begin(dst, r)
	var nh uint8
	switch {
	case s.flow.Dummy && r.IntN(8) == 0:
		// RFC 4303 section 2.6: a dummy packet's payload is arbitrary.
		nh = protoNoNext
		dst = appendRand(dst, r, r.IntN(200))
		s.dummies[side]++
	case s.flow.Mode == Tunnel:
		in := len(dst)
		s.innerID[side]++
		dst = appendIPHeader(dst, s.inner[side], s.inner[1-side], 0, s.innerID[side])
		var proto uint8
		dst, proto = s.conv.appendSegment(dst, r, side, s.inner[side], s.inner[1-side])
		nh = protoIPIP
		if s.flow.Inner.is6() {
			dst[in+6] = proto
			nh = protoIPv6
		} else {
			dst[in+9] = proto
		}
		finishIPHeader(dst[in:])
		if s.flow.Padding == PaddingTFC {
			dst = appendRand(dst, r, 1+r.IntN(96))
		}
	default:
		dst, nh = s.conv.appendSegment(dst, r, side, p.src, p.dst)
	}
	extra := 0
	if s.flow.Padding == PaddingExtra {
		extra = r.IntN(256)
	}
	dst = a.finish(dst, espOff, nh, extra)
	p.close(dst, ipOff, true)
	return dst
}

// labels returns the Labels of the session's SAs that sent packets.
func (s *session) labels(pcap string) []Label {
	f := &s.flow
	var out []Label
	for side := range f.sas() {
		a := s.sa[side]
		if a.seq == 0 {
			continue
		}
		l := Label{
			Pcap:    pcap,
			Src:     a.Src.String(),
			Dst:     a.Dst.String(),
			SPI:     a.SPI,
			Verdict: "encrypted",
			ICVLen:  a.ICVLen,
			IVLen:   a.Cipher.IVLen(),
			Mode:    f.Mode.String(),
			Encap:   f.Encap.String(),
			Auth:    a.Auth.String(),
			Cipher:  a.Cipher.String(),
			Packets: int(a.seq),
			Outer:   "ipv4",
			Padding: f.Padding.String(),
			Tags:    f.Traffic.tags(),
		}
		if a.Cipher.Cleartext() {
			l.Verdict = "null"
		}
		switch a.Cipher {
		case CipherNullAuthAESGMAC:
			l.Auth = "AES-GMAC"
		case CipherAESGCM, CipherChaCha20Poly1305:
			l.Auth = "AEAD"
		}
		if f.Outer.is6() {
			l.Outer = "ipv6"
		}
		l.Inner = f.Traffic.protocol(f.Outer.is6())
		if f.Mode == Tunnel {
			v := "ipv4/"
			if f.Inner.is6() {
				v = "ipv6/"
			}
			l.Inner = v + f.Traffic.protocol(f.Inner.is6())
		}
		if f.Encap == EncapUDP {
			sp, dp := int(s.path[side].sport), int(s.path[side].dport)
			l.Sport, l.Dport = &sp, &dp
			if f.NAT {
				l.Tags = append(l.Tags, "nat")
			}
		}
		if s.dummies[side] > 0 {
			l.Tags = append(l.Tags, "dummy-nh59")
		}
		if l.Packets <= 3 {
			l.Tags = append(l.Tags, "short")
		}
		slices.Sort(l.Tags)
		out = append(out, l)
	}
	return out
}
