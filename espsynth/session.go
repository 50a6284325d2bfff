package espsynth

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// session is a running Flow: its SAs (two per generation of keys), the
// outer paths of both directions, the inner addresses and conversations.
type session struct {
	flow  Flow
	taken map[flowKey]bool
	r     *rand.Rand
	// pairs holds every SA pair in order of rekeying; the last is in use.
	// For one-way flows the second SA of a pair is nil.
	pairs   [][2]*sa
	path    [2]path
	inner   [2][2]netip.Addr // tunnel mode: [family][side] inner hosts
	innerID [2]uint16
	conv    [2]*conv // per inner family; only dual-stack tunnels use both
	// remaining counts the session's packets still to send, segLeft those
	// before the next rekey.
	remaining, segLeft int
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
	s := &session{flow: f, taken: taken, r: r, remaining: f.Packets, segLeft: f.Packets / (f.Rekeys + 1)}
	if err := s.rekey(f.SPI); err != nil {
		return nil, err
	}
	ends := [2]netip.Addr{f.Initiator, f.Responder}
	for side := range 2 {
		s.path[side] = newPath(ends[side], ends[1-side])
	}
	switch f.Inner {
	case Dual:
		for side := range 2 {
			s.inner[0][side], s.inner[1][side] = randAddr(r, IPv4), randAddr(r, IPv6)
		}
	default:
		for side := range 2 {
			s.inner[0][side] = randAddr(r, f.Inner)
		}
	}
	for fam := range 2 {
		s.conv[fam] = newConv(r, f.Traffic)
		if f.OneWay {
			// Only the initiator speaks: no handshake to wait for.
			s.conv[fam].skipHandshake()
		}
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

// rekey starts a new pair of SAs with fresh keys, as a Child SA rekey
// (RFC 7296 section 1.3.3) does; sequence numbers restart at 1. Non-zero
// entries of spis are used as they are.
func (s *session) rekey(spis [2]uint32) error {
	f := &s.flow
	ends := [2]netip.Addr{f.Initiator, f.Responder}
	var pair [2]*sa
	for side := range f.sas() {
		src, dst := ends[side], ends[1-side]
		spi := spis[side]
		for spi == 0 || s.taken[flowKey{src, dst, spi}] {
			if spis[side] != 0 {
				return fmt.Errorf("flow %v > %v SPI %#x is already in use", src, dst, spi)
			}
			spi = 256 + s.r.Uint32N(1<<32-256)
		}
		s.taken[flowKey{src, dst, spi}] = true
		a, err := newSA(s.r, src, dst, spi, f.Cipher, f.Auth, f.ICVLen)
		if err != nil {
			return err
		}
		pair[side] = a
	}
	s.pairs = append(s.pairs, pair)
	return nil
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

// appendPacket appends the session's next ESP frame and describes it in
// info.
func (s *session) appendPacket(dst []byte, r *rand.Rand, info *PacketInfo) []byte {
	if s.segLeft == 0 {
		// Rekeying draws from r, so it stays deterministic; a failure
		// would need 2^32 SPIs in use.
		if err := s.rekey([2]uint32{}); err != nil {
			panic(err)
		}
		s.segLeft = s.flow.Packets / (s.flow.Rekeys + 1)
		if len(s.pairs) == s.flow.Rekeys+1 {
			s.segLeft = s.remaining // the last SA pair takes the rest
		}
	}
	pair := s.pairs[len(s.pairs)-1]
	fam := 0
	if s.flow.Inner == Dual && s.flow.Mode == Tunnel {
		fam = r.IntN(2)
	}
	cv := s.conv[fam]
	side := cv.nextSide(r, s.flow.OneWay)
	if s.segLeft == 1 && !s.flow.OneWay {
		// Every SA of a two-way session appears on the wire.
		for i, a := range pair {
			if a.seq == 0 {
				side = i
			}
		}
	}
	s.remaining--
	s.segLeft--
	a, p := pair[side], &s.path[side]
	dst, ipOff := p.open(dst, protoESP)
	dst, espOff := a.begin(dst, r)
	var nh uint8
	switch {
	case s.flow.Dummy && r.IntN(8) == 0:
		// RFC 4303 section 2.6: a dummy packet's payload is arbitrary.
		nh = protoNoNext
		dst = appendRand(dst, r, r.IntN(200))
		a.dummies++
	case s.flow.Mode == Tunnel:
		in := len(dst)
		src, to := s.inner[fam][side], s.inner[fam][1-side]
		s.innerID[side]++
		dst = appendIPHeader(dst, src, to, 0, s.innerID[side])
		var proto uint8
		dst, proto = cv.appendSegment(dst, r, side, src, to)
		nh = protoIPIP
		if src.Is6() {
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
		dst, nh = cv.appendSegment(dst, r, side, p.src, p.dst)
	}
	extra := 0
	if s.flow.Padding == PaddingExtra {
		extra = r.IntN(256)
	}
	dst = a.finish(dst, espOff, nh, extra)
	p.close(dst, ipOff, true)
	*info = PacketInfo{
		ESP: true, Src: a.Src, Dst: a.Dst, SPI: a.SPI, Seq: a.seq, ESPOffset: espOff,
		IVLen: a.Cipher.IVLen(), ICVLen: a.ICVLen, PadLen: a.lastPad, NextHeader: nh,
		Cleartext: a.Cipher.Cleartext(),
	}
	return dst
}

// sas lists the session's SAs in order: initiator then responder, per
// generation of keys.
func (s *session) sas() []*sa {
	var out []*sa
	for _, p := range s.pairs {
		for _, a := range p {
			if a != nil {
				out = append(out, a)
			}
		}
	}
	return out
}

// labels returns the Labels of the session's SAs that sent packets.
func (s *session) labels(pcap string) []Label {
	var out []Label
	for gen, pair := range s.pairs {
		for side, a := range pair {
			if a == nil || a.seq == 0 {
				continue
			}
			out = append(out, s.label(pcap, a, side, gen))
		}
	}
	return out
}

// label describes one SA of the session; gen counts its rekeys.
func (s *session) label(pcap string, a *sa, side, gen int) Label {
	f := &s.flow
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
		Tags:    append(f.Traffic.tags(), f.Tags...),
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
		switch f.Inner {
		case Dual:
			l.Inner = "dual/" + f.Traffic.protocol(false)
			if f.Traffic == TrafficICMP {
				l.Inner = "dual/mixed" // ICMP and ICMPv6
			}
		case IPv6:
			l.Inner = "ipv6/" + f.Traffic.protocol(true)
		default:
			l.Inner = "ipv4/" + f.Traffic.protocol(false)
		}
	}
	if f.Encap == EncapUDP {
		sp, dp := int(s.path[side].sport), int(s.path[side].dport)
		l.Sport, l.Dport = &sp, &dp
		if f.NAT {
			l.Tags = append(l.Tags, "nat")
		}
	}
	if a.dummies > 0 {
		l.Tags = append(l.Tags, "dummy-nh59")
	}
	if l.Packets <= 3 {
		l.Tags = append(l.Tags, "short")
	}
	if f.Rekeys > 0 {
		l.Tags = append(l.Tags, "rekey")
		if gen < len(s.pairs)-1 {
			l.Tags = append(l.Tags, "before-rekey")
		}
		if gen > 0 {
			l.Tags = append(l.Tags, "rekeyed")
		}
	}
	slices.Sort(l.Tags)
	return l
}
