package espsynth

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
)

// IP protocol numbers the generator writes.
const (
	protoICMP   = 1
	protoIPIP   = 4
	protoTCP    = 6
	protoUDP    = 17
	protoIPv6   = 41
	protoGRE    = 47
	protoESP    = 50
	protoICMPv6 = 58
	protoNoNext = 59
	protoSCTP   = 132
)

// Traffic is the kind of conversation a flow carries inside ESP.
type Traffic uint8

// The inner traffic kinds. Each is a two-way conversation: the initiator's
// packets travel in the flow's first SA, the responder's in the second.
const (
	// TrafficHTTP is a TCP connection (handshake, then HTTP-like requests
	// and responses with consistent sequence and acknowledgement numbers).
	TrafficHTTP Traffic = iota
	// TrafficTLS is a TCP connection carrying TLS application-data records.
	TrafficTLS
	// TrafficTCPBin is a TCP connection carrying random binary payloads.
	TrafficTCPBin
	// TrafficDNS is DNS-like UDP: queries to port 53 and their answers.
	TrafficDNS
	// TrafficUDPRandom is UDP with random payloads between two random ports.
	TrafficUDPRandom
	// TrafficICMP is ICMP echo (ICMPv6 echo over IPv6).
	TrafficICMP
	// TrafficSCTP is SCTP DATA chunks with CRC32c checksums.
	TrafficSCTP
	// TrafficGRE is GRE (RFC 2784) carrying IPv4 pings between two
	// further hosts, as GRE-over-IPsec site links do.
	TrafficGRE
	// TrafficMixed interleaves HTTP, DNS, ICMP and random UDP conversations.
	TrafficMixed
	numTraffic
)

// String names the traffic kind as it appears in label tags.
func (t Traffic) String() string {
	switch t {
	case TrafficHTTP:
		return "http"
	case TrafficTLS:
		return "tls"
	case TrafficTCPBin:
		return "tcp-bin"
	case TrafficDNS:
		return "dns"
	case TrafficUDPRandom:
		return "udp-random"
	case TrafficICMP:
		return "icmp"
	case TrafficSCTP:
		return "sctp"
	case TrafficGRE:
		return "gre"
	case TrafficMixed:
		return "mixed"
	}
	return fmt.Sprintf("Traffic(%d)", uint8(t))
}

// mixedKinds are the conversations a TrafficMixed flow interleaves.
var mixedKinds = []Traffic{TrafficHTTP, TrafficDNS, TrafficICMP, TrafficUDPRandom}

// protocol is the inner protocol name used in Label.Inner.
func (t Traffic) protocol(v6 bool) string {
	switch t {
	case TrafficHTTP, TrafficTLS, TrafficTCPBin:
		return "tcp"
	case TrafficDNS, TrafficUDPRandom:
		return "udp"
	case TrafficICMP:
		if v6 {
			return "icmpv6"
		}
		return "icmp"
	case TrafficSCTP:
		return "sctp"
	case TrafficGRE:
		return "gre"
	}
	return "mixed"
}

// tags lists the label tags of the traffic kind.
func (t Traffic) tags() []string {
	if t == TrafficMixed {
		s := make([]string, len(mixedKinds))
		for i, k := range mixedKinds {
			s[i] = k.String()
		}
		return s
	}
	return []string{t.String()}
}

// conv is the state of one two-way conversation: enough to keep TCP sequence
// numbers, ICMP sequence numbers and SCTP TSNs consistent from packet to
// packet. Side 0 is the initiator.
type conv struct {
	kind  Traffic
	port  [2]uint16
	seq   [2]uint32 // TCP next sequence number, SCTP next TSN
	vtag  [2]uint32 // SCTP verification tag each side expects
	ssn   [2]uint16 // SCTP stream sequence number
	step  int       // packets sent so far
	echo  uint16    // ICMP identifier
	eseq  uint16    // ICMP sequence number
	dnsID uint16
	await bool // a request is outstanding; the responder answers next
	subs  []*conv
	last  *conv         // sub-conversation that sent the previous packet
	gre   [2]netip.Addr // TrafficGRE: the hosts inside the GRE tunnel
}

// newConv starts a conversation of kind k with random ports and numbers.
func newConv(r *rand.Rand, k Traffic) *conv {
	c := &conv{kind: k}
	c.port[0] = uint16(32768 + r.IntN(28000))
	switch k {
	case TrafficHTTP:
		c.port[1] = 80
	case TrafficTLS:
		c.port[1] = 443
	case TrafficTCPBin:
		c.port[1] = uint16(1024 + r.IntN(30000))
	case TrafficDNS:
		c.port[1] = 53
	case TrafficUDPRandom:
		c.port[1] = uint16(1024 + r.IntN(60000))
	case TrafficSCTP:
		c.port[1] = []uint16{2905, 3868, 36412, 38412}[r.IntN(4)]
	case TrafficMixed:
		for _, sk := range mixedKinds {
			c.subs = append(c.subs, newConv(r, sk))
		}
	case TrafficGRE:
		c.subs = []*conv{newConv(r, TrafficICMP)}
		c.gre = [2]netip.Addr{randAddr(r, IPv4), randAddr(r, IPv4)}
	}
	c.seq = [2]uint32{r.Uint32(), r.Uint32()}
	c.vtag = [2]uint32{r.Uint32() | 1, r.Uint32() | 1}
	c.echo = uint16(r.Uint32())
	c.dnsID = uint16(r.Uint32())
	return c
}

// nextSide picks who sends the next packet. oneWay forces the initiator.
func (c *conv) nextSide(r *rand.Rand, oneWay bool) int {
	if oneWay {
		return 0
	}
	switch c.kind {
	case TrafficMixed:
		c.last = c.subs[r.IntN(len(c.subs))]
		return c.last.nextSide(r, false)
	case TrafficGRE:
		return c.subs[0].nextSide(r, false)
	}
	switch c.kind {
	case TrafficHTTP, TrafficTLS, TrafficTCPBin:
		switch c.step {
		case 0, 2:
			return 0 // SYN, then the handshake's final ACK
		case 1:
			return 1 // SYN-ACK
		}
	}
	if c.await {
		return 1
	}
	if c.kind == TrafficTCPBin || c.kind == TrafficUDPRandom || c.kind == TrafficSCTP {
		return r.IntN(2)
	}
	return 0
}

// appendSegment appends the next transport segment sent by side, addressed
// from src to dst (whose pseudo-header the checksum covers), and returns
// the IP protocol number.
func (c *conv) appendSegment(dst []byte, r *rand.Rand, side int, src, dstAddr netip.Addr) ([]byte, uint8) {
	if c.kind == TrafficMixed {
		sub := c.last
		if sub == nil {
			sub = c.subs[0]
		}
		c.last = nil
		return sub.appendSegment(dst, r, side, src, dstAddr)
	}
	defer func() { c.step++ }()
	switch c.kind {
	case TrafficHTTP, TrafficTLS, TrafficTCPBin:
		return c.appendTCP(dst, r, side, src, dstAddr), protoTCP
	case TrafficDNS, TrafficUDPRandom:
		return c.appendUDP(dst, r, side, src, dstAddr), protoUDP
	case TrafficICMP:
		if src.Is4() {
			return c.appendICMP(dst, r, side, src, dstAddr), protoICMP
		}
		return c.appendICMP(dst, r, side, src, dstAddr), protoICMPv6
	case TrafficSCTP:
		return c.appendSCTP(dst, r, side), protoSCTP
	case TrafficGRE:
		return c.appendGRE(dst, r, side), protoGRE
	}
	panic("espsynth: unknown traffic kind")
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

func (c *conv) appendTCP(dst []byte, r *rand.Rand, side int, src, dstAddr netip.Addr) []byte {
	off := len(dst)
	var flags byte = tcpACK
	ack := c.seq[1-side]
	switch c.step {
	case 0:
		flags, ack = tcpSYN, 0
	case 1:
		flags = tcpSYN | tcpACK
	}
	dst = binary.BigEndian.AppendUint16(dst, c.port[side])
	dst = binary.BigEndian.AppendUint16(dst, c.port[1-side])
	dst = binary.BigEndian.AppendUint32(dst, c.seq[side])
	dst = binary.BigEndian.AppendUint32(dst, ack)
	hlen := 20
	if flags&tcpSYN != 0 {
		hlen = 24 // with an MSS option, as real stacks send
	}
	dst = append(dst, byte(hlen/4)<<4, 0)
	dst = binary.BigEndian.AppendUint16(dst, 64240)
	dst = append(dst, 0, 0, 0, 0) // checksum, urgent pointer
	if flags&tcpSYN != 0 {
		dst = append(dst, 2, 4, 0x05, 0x64) // MSS 1380: room for ESP overhead
		c.seq[side]++                       // SYN consumes one sequence number
	} else if c.step > 2 {
		n := len(dst)
		dst = c.appendTCPPayload(dst, r, side)
		if len(dst) > n {
			flags |= tcpPSH
		}
		c.seq[side] += uint32(len(dst) - n)
		c.await = side == 0 && c.kind != TrafficTCPBin
	}
	dst[off+13] = flags
	l4Checksum(dst[off:], 16, src, dstAddr, protoTCP)
	return dst
}

// httpResponse is the canned head of HTTP responses; the body is filled in.
const httpResponse = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: "

// maxTCPPayload bounds TCP payloads so that the outer packet stays within
// a 1500-byte MTU even with the largest overhead the generator adds (outer
// and inner IPv6, UDP encapsulation, a 16-byte IV, TFC padding, 255 bytes
// of padding and a 32-byte ICV: 517 bytes), as MSS clamping on a real
// IPsec gateway would ensure.
const maxTCPPayload = 1500 - 517 - 20

// appendTCPPayload appends application bytes in the style of the flow.
func (c *conv) appendTCPPayload(dst []byte, r *rand.Rand, side int) []byte {
	switch c.kind {
	case TrafficHTTP:
		if side == 0 {
			dst = append(dst, "GET /"...)
			dst = appendWord(dst, r, 4+r.IntN(20))
			dst = append(dst, " HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"...)
			return dst
		}
		body := 40 + r.IntN(700) // with the head, well under maxTCPPayload
		dst = append(dst, httpResponse...)
		dst = fmt.Appendf(dst, "%d\r\n\r\n<html><body>", body)
		return appendWord(dst, r, body)
	case TrafficTLS:
		n := 24 + r.IntN(maxTCPPayload-5-24)
		dst = append(dst, 0x17, 0x03, 0x03, byte(n>>8), byte(n))
		return appendRand(dst, r, n)
	}
	return appendRand(dst, r, 1+r.IntN(maxTCPPayload))
}

func (c *conv) appendUDP(dst []byte, r *rand.Rand, side int, src, dstAddr netip.Addr) []byte {
	off := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, c.port[side])
	dst = binary.BigEndian.AppendUint16(dst, c.port[1-side])
	dst = append(dst, 0, 0, 0, 0)
	if c.kind == TrafficDNS {
		if side == 0 {
			c.dnsID++
		}
		dst = c.appendDNS(dst, r, side)
		c.await = side == 0
	} else {
		dst = appendRand(dst, r, 8+r.IntN(600))
	}
	binary.BigEndian.PutUint16(dst[off+4:], uint16(len(dst)-off))
	l4Checksum(dst[off:], 6, src, dstAddr, protoUDP)
	return dst
}

// appendDNS appends a DNS query for an A record, or an answer to it.
func (c *conv) appendDNS(dst []byte, r *rand.Rand, side int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, c.dnsID)
	if side == 0 {
		dst = append(dst, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, 1 question
	} else {
		dst = append(dst, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0) // QR RD RA, 1 answer
	}
	// The name is drawn afresh; the answer repeats a plausible query.
	label := 3 + r.IntN(12)
	dst = append(dst, byte(label))
	dst = appendWord(dst, r, label)
	dst = append(dst, 7)
	dst = append(dst, "example"...)
	dst = append(dst, 3, 'c', 'o', 'm', 0, 0, 1, 0, 1) // QTYPE A, QCLASS IN
	if side == 1 {
		dst = append(dst, 0xc0, 0x0c, 0, 1, 0, 1) // pointer to the question
		dst = binary.BigEndian.AppendUint32(dst, 300)
		dst = append(dst, 0, 4, 192, 0, 2, byte(1+r.IntN(254)))
	}
	return dst
}

func (c *conv) appendICMP(dst []byte, r *rand.Rand, side int, src, dstAddr netip.Addr) []byte {
	off := len(dst)
	v6 := !src.Is4()
	typ := byte(8) // echo request
	if side == 1 {
		typ = 0
	} else {
		c.eseq++
	}
	if v6 {
		typ = 128 + byte(side)
	}
	dst = append(dst, typ, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, c.echo)
	dst = binary.BigEndian.AppendUint16(dst, c.eseq)
	// Like ping: a timestamp then a counting pattern.
	dst = binary.BigEndian.AppendUint64(dst, uint64(c.eseq)*1000003)
	for i := range 48 {
		dst = append(dst, byte(0x10+i))
	}
	c.await = side == 0
	if v6 {
		l4Checksum(dst[off:], 2, src, dstAddr, protoICMPv6)
	} else {
		binary.BigEndian.PutUint16(dst[off+2:], fold(sum16(0, dst[off:])))
	}
	return dst
}

// appendSCTP appends an SCTP packet with one DATA chunk (RFC 4960 section
// 3.3.1) and its CRC32c checksum (appendix B).
func (c *conv) appendSCTP(dst []byte, r *rand.Rand, side int) []byte {
	off := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, c.port[side])
	dst = binary.BigEndian.AppendUint16(dst, c.port[1-side])
	dst = binary.BigEndian.AppendUint32(dst, c.vtag[1-side])
	dst = append(dst, 0, 0, 0, 0)
	n := 16 + r.IntN(400)
	dst = append(dst, 0, 0x03) // DATA, beginning and end of a message
	dst = binary.BigEndian.AppendUint16(dst, uint16(16+n))
	dst = binary.BigEndian.AppendUint32(dst, c.seq[side])
	dst = binary.BigEndian.AppendUint16(dst, 0)
	dst = binary.BigEndian.AppendUint16(dst, c.ssn[side])
	dst = binary.BigEndian.AppendUint32(dst, 46) // PPID: Diameter
	dst = appendRand(dst, r, n)
	for (len(dst)-off)%4 != 0 {
		dst = append(dst, 0)
	}
	c.seq[side]++
	c.ssn[side]++
	// The CRC32c is stored least significant byte first (RFC 4960 B).
	crc := sctpCRC(dst[off:])
	binary.LittleEndian.PutUint32(dst[off+8:], crc)
	return dst
}

// appendGRE appends a GRE header without checksum, key or sequence number
// (RFC 2784) and the IPv4 ping it carries.
func (c *conv) appendGRE(dst []byte, r *rand.Rand, side int) []byte {
	dst = append(dst, 0, 0, 0x08, 0x00) // no flags, version 0, IPv4
	in := len(dst)
	c.eseq++ // as an IPv4 identification
	dst = appendIPHeader(dst, c.gre[side], c.gre[1-side], protoICMP, c.eseq)
	dst = c.subs[0].appendICMP(dst, r, side, c.gre[side], c.gre[1-side])
	finishIPHeader(dst[in:])
	return dst
}

// appendRand appends n random bytes.
func appendRand(dst []byte, r *rand.Rand, n int) []byte {
	dst = grow(dst, n)
	fillRand(r, dst[len(dst)-n:])
	return dst
}

// appendWord appends n random lowercase letters, for text protocols.
func appendWord(dst []byte, r *rand.Rand, n int) []byte {
	for n > 0 {
		v := r.Uint64()
		for i := 0; i < 12 && n > 0; i, n = i+1, n-1 {
			dst = append(dst, 'a'+byte(v%26))
			v /= 26
		}
	}
	return dst
}

// grow extends dst by n bytes, reusing its capacity when it can.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst[:len(dst)+n]
	}
	return append(dst, make([]byte, n)...)
}

// skipHandshake starts TCP conversations as if already established, for
// one-way flows whose responder never answers a SYN.
func (c *conv) skipHandshake() {
	if c.step < 3 {
		c.step = 3
	}
	for _, s := range c.subs {
		s.skipHandshake()
	}
}
