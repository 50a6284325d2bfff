package espsynth

import (
	"encoding/binary"
	"math/rand/v2"
)

// bgKind is a kind of non-ESP background traffic.
type bgKind uint8

const (
	bgTCP       bgKind = iota // plain HTTP-like TCP
	bgUDP                     // plain DNS
	bgIKE500                  // IKEv2 on UDP 500
	bgIKE4500                 // IKEv2 on UDP 4500 behind the non-ESP marker
	bgKeepalive               // NAT-T keepalive: one 0xFF byte on UDP 4500
	numBgKinds
)

// bgConv is one background conversation between two hosts.
type bgConv struct {
	kind  bgKind
	path  [2]path
	conv  *conv
	spi   [2]uint64 // IKE SPIs of initiator and responder
	msgID uint32
}

// background holds a few conversations of each kind and picks among them.
type background struct {
	convs []*bgConv
}

// bgPerKind is how many conversations of each kind run at once.
const bgPerKind = 4

func newBackground(r *rand.Rand) *background {
	b := &background{}
	for k := range numBgKinds {
		for range bgPerKind {
			v := IPv4
			if r.IntN(3) == 0 {
				v = IPv6
			}
			a, c := randAddr(r, v), randAddr(r, v)
			bc := &bgConv{kind: k, path: [2]path{newPath(a, c), newPath(c, a)}}
			bc.spi = [2]uint64{r.Uint64(), r.Uint64()}
			switch k {
			case bgTCP:
				bc.conv = newConv(r, TrafficHTTP)
			case bgUDP:
				bc.conv = newConv(r, TrafficDNS)
			default:
				ports := [2]uint16{500, 500}
				if k != bgIKE500 {
					ports = [2]uint16{uint16(1024 + r.IntN(64000)), 4500}
				}
				for side := range 2 {
					bc.path[side].udp = true
					bc.path[side].sport, bc.path[side].dport = ports[side], ports[1-side]
				}
			}
			b.convs = append(b.convs, bc)
		}
	}
	return b
}

// appendPacket appends one background frame.
func (b *background) appendPacket(dst []byte, r *rand.Rand) []byte {
	c := b.convs[r.IntN(len(b.convs))]
	side := 0
	switch {
	case c.conv != nil:
		side = c.conv.nextSide(r, false)
	case c.kind != bgKeepalive:
		side = r.IntN(2)
	}
	p := &c.path[side]
	switch c.kind {
	case bgTCP, bgUDP:
		proto := uint8(protoTCP)
		if c.kind == bgUDP {
			proto = protoUDP
		}
		dst, ipOff := p.open(dst, proto)
		dst, _ = c.conv.appendSegment(dst, r, side, p.src, p.dst)
		p.close(dst, ipOff, false)
		return dst
	case bgKeepalive:
		// RFC 3948 section 2.3: sent by the NAT'd side only.
		dst, ipOff := p.open(dst, protoUDP)
		dst = append(dst, 0xff)
		p.close(dst, ipOff, false)
		return dst
	}
	dst, ipOff := p.open(dst, protoUDP)
	if c.kind == bgIKE4500 {
		// RFC 3948 section 2.2: a zero "SPI" marks IKE on the ESP port.
		dst = append(dst, 0, 0, 0, 0)
	}
	dst = c.appendIKE(dst, r, side)
	p.close(dst, ipOff, false)
	return dst
}

// appendIKE appends an IKEv2 message (RFC 7296 section 3.1): IKE_SA_INIT
// on port 500, encrypted IKE_AUTH or INFORMATIONAL (an SK payload) on 4500.
func (c *bgConv) appendIKE(dst []byte, r *rand.Rand, side int) []byte {
	off := len(dst)
	dst = binary.BigEndian.AppendUint64(dst, c.spi[0])
	next, exch := byte(33), byte(34) // SA payload, IKE_SA_INIT
	if c.kind == bgIKE4500 {
		next, exch = 46, 37 // SK payload, INFORMATIONAL
	}
	if c.kind == bgIKE500 && side == 0 {
		dst = binary.BigEndian.AppendUint64(dst, 0) // responder SPI unknown yet
	} else {
		dst = binary.BigEndian.AppendUint64(dst, c.spi[1])
	}
	flags := byte(0x08) // initiator
	if side == 1 {
		flags = 0x20 // response
	} else {
		c.msgID++
	}
	dst = append(dst, next, 0x20, exch, flags)
	dst = binary.BigEndian.AppendUint32(dst, c.msgID)
	dst = append(dst, 0, 0, 0, 0) // length, set below
	n := 32 + r.IntN(300)
	dst = append(dst, 0, 0) // last payload, not critical
	dst = binary.BigEndian.AppendUint16(dst, uint16(4+n))
	dst = appendRand(dst, r, n)
	binary.BigEndian.PutUint32(dst[off+24:], uint32(len(dst)-off))
	return dst
}
