package ebpf

import (
	"encoding/binary"
	"net/netip"
)

// Hand-built frames for the program tests. Addresses are documentation
// prefixes only (RFC 5737, RFC 3849).

var (
	macA = []byte{0x02, 0, 0, 0, 0, 0xa}
	macB = []byte{0x02, 0, 0, 0, 0, 0xb}

	outerSrc4 = netip.MustParseAddr("192.0.2.1")
	outerDst4 = netip.MustParseAddr("192.0.2.2")
	innerSrc4 = netip.MustParseAddr("198.51.100.10")
	innerDst4 = netip.MustParseAddr("203.0.113.20")
	outerSrc6 = netip.MustParseAddr("2001:db8::1")
	outerDst6 = netip.MustParseAddr("2001:db8::2")
	innerSrc6 = netip.MustParseAddr("2001:db8:1::10")
	innerDst6 = netip.MustParseAddr("2001:db8:2::20")
)

const (
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	ether8021Q  = 0x8100
	ether8021AD = 0x88a8
)

// eth returns an Ethernet header with the given VLAN tags (outermost first).
func eth(etype uint16, tags ...uint16) []byte {
	b := append(append([]byte{}, macB...), macA...)
	for i, tpid := range tags {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i))
	}
	return binary.BigEndian.AppendUint16(b, etype)
}

type ip4opts struct {
	options []byte // multiple of 4
	fragOff uint16 // in 8-byte units
	mf      bool
}

func ipv4(proto uint8, src, dst netip.Addr, payload []byte, o ip4opts) []byte {
	ihl := 20 + len(o.options)
	b := make([]byte, ihl, ihl+len(payload))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(ihl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	frag := o.fragOff & 0x1fff
	if o.mf {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = 64
	b[9] = proto
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], o.options)
	var sum uint32
	for i := 0; i < ihl; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	return append(b, payload...)
}

// ext6 is one IPv6 extension header: its type and its encoded bytes without
// the next-header byte (filled in by ipv6).
type ext6 struct {
	typ  uint8
	body []byte
}

// optsExt returns a hop-by-hop, routing or destination options header of
// (n+1)*8 bytes.
func optsExt(typ uint8, n int) ext6 {
	b := make([]byte, (n+1)*8)
	b[1] = byte(n)
	if typ != 43 {
		b[2] = 1 // PadN covering the rest
		b[3] = byte(len(b) - 4)
	} else {
		b[2] = 0 // routing type 0 header with segments left 0: skipped
	}
	return ext6{typ: typ, body: b}
}

func fragExt(offset uint16, more bool) ext6 {
	b := make([]byte, 8)
	v := offset << 3
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], 0xabcd)
	return ext6{typ: 44, body: b}
}

func ipv6(proto uint8, src, dst netip.Addr, payload []byte, exts ...ext6) []byte {
	var chain []byte
	for i, e := range exts {
		body := append([]byte{}, e.body...)
		if i+1 < len(exts) {
			body[0] = exts[i+1].typ
		} else {
			body[0] = proto
		}
		chain = append(chain, body...)
	}
	first := proto
	if len(exts) > 0 {
		first = exts[0].typ
	}
	b := make([]byte, 40, 40+len(chain)+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(chain)+len(payload)))
	b[6] = first
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	return append(append(b, chain...), payload...)
}

func udp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// tcp returns a minimal TCP header with payload (checksum not computed: the
// program does not verify it).
func tcp(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12] = 5 << 4
	b[13] = 0x18
	return append(b, payload...)
}

// espNull returns an ESP packet with NULL encryption: header, iv, payload,
// padding to 4 bytes (plus extra), pad length, next header, ICV.
func espNull(spi, seq uint32, ivLen int, payload []byte, nh uint8, icvLen int) []byte {
	b := binary.BigEndian.AppendUint32(nil, spi)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = append(b, make([]byte, ivLen)...)
	b = append(b, payload...)
	pad := (4 - (len(payload)+2)%4) % 4
	for i := 1; i <= pad; i++ {
		b = append(b, byte(i))
	}
	b = append(b, byte(pad), nh)
	for i := range icvLen {
		b = append(b, byte(0xc0+i))
	}
	return b
}

// espEncrypted returns ESP whose body looks random.
func espEncrypted(spi, seq uint32, n int) []byte {
	b := binary.BigEndian.AppendUint32(nil, spi)
	b = binary.BigEndian.AppendUint32(b, seq)
	x := uint32(0x9e3779b9)
	for range n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b = append(b, byte(x))
	}
	return b
}

// wesp returns a WESP header followed by esp (a complete ESP packet).
func wesp(nh, hdrLen, trlLen, flags uint8, esp []byte) []byte {
	b := []byte{nh, hdrLen, trlLen, flags}
	if flags&0x10 != 0 {
		b = append(b, 0, 0, 0, 0)
	}
	return append(b, esp...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// Frames used by several tests.

// innerUDP4 is the cleartext of a tunnel-mode ESP-NULL packet: IPv4/UDP.
func innerUDP4(sport, dport uint16) []byte {
	return ipv4(17, innerSrc4, innerDst4, udp(sport, dport, []byte("espy inner payload")), ip4opts{})
}

func innerTCP6(sport, dport uint16) []byte {
	return ipv6(6, innerSrc6, innerDst6, tcp(sport, dport, []byte("espy")))
}

// nullTunnel4 is an IPv4 ESP-NULL tunnel-mode frame (ICV 12, no IV).
func nullTunnel4(spi uint32, sport, dport uint16) []byte {
	return cat(eth(etherIPv4), ipv4(50, outerSrc4, outerDst4, espNull(spi, 1, 0, innerUDP4(sport, dport), 4, 12), ip4opts{}))
}

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }
