package packet

import "net/netip"

// NATTPort is the UDP port of RFC 3948 and the default TCP port of RFC 9329.
const NATTPort = 4500

// maxExtHeaders bounds the IPv6 extension header walk; real stacks send at
// most a handful and an unbounded walk is a cheap CPU attack.
const maxExtHeaders = 8

// Decoder decodes frames into Packets. The zero value decodes ESP, ESP in UDP
// on port 4500 and WESP; ESP in TCP only on ports added with AddTCPPort. A
// Decoder must not be changed while it decodes.
type Decoder struct {
	udpPorts [8]uint16
	nUDP     int
	tcpPorts [4]uint16
	nTCP     int
}

// AddUDPPort makes the decoder treat UDP port as an RFC 3948 port besides
// 4500. It reports false when the table of extra ports is full.
func (d *Decoder) AddUDPPort(port uint16) bool {
	if d.nUDP == len(d.udpPorts) {
		return false
	}
	d.udpPorts[d.nUDP] = port
	d.nUDP++
	return true
}

// AddTCPPort makes the decoder read TCP segments on port as RFC 9329
// ESP-in-TCP streams. It reports false when the table is full.
func (d *Decoder) AddTCPPort(port uint16) bool {
	if d.nTCP == len(d.tcpPorts) {
		return false
	}
	d.tcpPorts[d.nTCP] = port
	d.nTCP++
	return true
}

func (d *Decoder) isUDPPort(p uint16) bool {
	if p == NATTPort {
		return true
	}
	for _, q := range d.udpPorts[:d.nUDP] {
		if q == p {
			return true
		}
	}
	return false
}

func (d *Decoder) isTCPPort(p uint16) bool {
	for _, q := range d.tcpPorts[:d.nTCP] {
		if q == p {
			return true
		}
	}
	return false
}

// Decode decodes frame, captured with link type lt, into p. It returns nil
// for every IP frame it could parse, whatever it carries (see p.Kind), and a
// sentinel error for frames it could not.
func (d *Decoder) Decode(lt LinkType, frame []byte, p *Packet) error {
	*p = Packet{}
	b, et, err := d.network(lt, frame, p)
	if err != nil {
		return err
	}
	var proto uint8
	var l4 []byte
	switch et {
	case etherTypeIPv4:
		proto, l4, err = d.ipv4(b, p)
	case etherTypeIPv6:
		proto, l4, err = d.ipv6(b, p)
	default:
		return ErrNotIP
	}
	if err != nil || p.Kind == KindFragment {
		return err
	}
	return d.transport(proto, l4, p)
}

func (d *Decoder) ipv4(b []byte, p *Packet) (uint8, []byte, error) {
	if len(b) < 20 {
		return 0, nil, ErrTruncated
	}
	if b[0]>>4 != 4 {
		return 0, nil, ErrBadIPHeader
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(be16(b[2:]))
	if ihl < 20 || total < ihl {
		return 0, nil, ErrBadIPHeader
	}
	if len(b) < total {
		return 0, nil, ErrTruncated
	}
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	p.IPHeader = b[:ihl]
	if frag := be16(b[6:]); frag&0x3fff != 0 { // MF set or offset non-zero
		p.Kind = KindFragment
		return 0, nil, nil
	}
	return b[9], b[ihl:total], nil
}

func (d *Decoder) ipv6(b []byte, p *Packet) (uint8, []byte, error) {
	if len(b) < 40 {
		return 0, nil, ErrTruncated
	}
	if b[0]>>4 != 6 {
		return 0, nil, ErrBadIPHeader
	}
	total := 40 + int(be16(b[4:]))
	if total == 40 {
		// A zero payload length means a jumbogram (RFC 2675), which no
		// ESP path uses; treat the frame's remaining bytes as the payload.
		total = len(b)
	}
	if len(b) < total {
		return 0, nil, ErrTruncated
	}
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	next := b[6]
	off := 40
	for i := 0; ; i++ {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDstOpts, ProtoFragment, ProtoAH:
		default:
			p.IPHeader = b[:off]
			return next, b[off:total], nil
		}
		if i == maxExtHeaders {
			return 0, nil, ErrTooManyExtHeaders
		}
		// The frame holds total bytes (checked above): an extension
		// header that does not fit is cut by the payload length, a
		// malformed header, not a short capture.
		if total-off < 8 {
			return 0, nil, ErrBadIPHeader
		}
		h := b[off:]
		var n int
		switch next {
		case ProtoFragment:
			if be16(h[2:])&0xfff9 != 0 { // offset or M flag
				p.IPHeader = b[:off+8]
				p.Kind = KindFragment
				return 0, nil, nil
			}
			n = 8 // an atomic fragment (RFC 6946): go on
		case ProtoAH:
			n = (int(h[1]) + 2) * 4
		default:
			n = (int(h[1]) + 1) * 8
		}
		if total-off < n {
			return 0, nil, ErrBadIPHeader
		}
		next = h[0]
		off += n
	}
}

func (d *Decoder) transport(proto uint8, b []byte, p *Packet) error {
	switch proto {
	case ProtoESP:
		return setESP(b, p)
	case ProtoWESP:
		return setWESP(b, p)
	case ProtoUDP:
		if len(b) < 8 { // b is bounded by the IP length, not the capture
			return ErrBadIPHeader
		}
		sp, dp := be16(b), be16(b[2:])
		if !d.isUDPPort(sp) && !d.isUDPPort(dp) {
			return nil
		}
		ulen := int(be16(b[4:]))
		if ulen < 8 || ulen > len(b) {
			return ErrBadIPHeader
		}
		p.Encap, p.SrcPort, p.DstPort = EncapUDP, sp, dp
		return d.natt(b[8:ulen], p)
	case ProtoTCP:
		if d.nTCP == 0 || len(b) < 20 {
			return nil
		}
		sp, dp := be16(b), be16(b[2:])
		if !d.isTCPPort(sp) && !d.isTCPPort(dp) {
			return nil
		}
		hl := int(b[12]>>4) * 4
		if hl < 20 || hl > len(b) {
			return ErrBadIPHeader
		}
		p.Encap, p.SrcPort, p.DstPort = EncapTCP, sp, dp
		return tcpFrame(b[hl:], p)
	}
	return nil
}

// natt classifies the payload of a UDP datagram on an RFC 3948 port.
func (d *Decoder) natt(b []byte, p *Packet) error {
	switch {
	case len(b) == 1 && b[0] == 0xff:
		p.Kind = KindKeepalive
		return nil
	case len(b) < 4:
		return ErrBadESP
	}
	switch be32(b) {
	case 0:
		p.Kind = KindIKE // non-ESP marker
		return nil
	case wespMarker:
		return setWESP(b[4:], p)
	}
	return setESP(b, p)
}

// wespMarker is the protocol identifier in front of UDP-encapsulated WESP
// (RFC 5840 section 2.1); no SPI below 256 is ever assigned (RFC 4303), so
// it cannot be mistaken for ESP.
const wespMarker = 0x00000002

// tcpFrame reads the first RFC 9329 frame of a TCP segment: a two-byte
// length, then IKE behind a non-ESP marker or an ESP packet. Segments that
// do not start on a frame boundary are reported as KindOther: espy does not
// reassemble TCP streams.
func tcpFrame(b []byte, p *Packet) error {
	if len(b) < 2 {
		return nil
	}
	n := int(be16(b))
	if n < 2+4 || n > len(b) {
		return nil
	}
	f := b[2:n]
	if be32(f) == 0 {
		p.Kind = KindIKE
		return nil
	}
	return setESP(f, p)
}

func setESP(b []byte, p *Packet) error {
	if len(b) < espHdrLen {
		return ErrBadESP
	}
	p.Kind = KindESP
	p.ESP = b
	return nil
}

func setWESP(b []byte, p *Packet) error {
	if len(b) < wespHdrLen {
		return ErrBadWESP
	}
	w := WESP{NextHeader: b[0], HdrLen: b[1], TrlLen: b[2], Flags: b[3]}
	off := wespHdrLen
	if w.Flags&WESPFlagPadding != 0 {
		off += wespPadLen
	}
	if w.Flags&wespVersionMask != 0 || w.IVLen() < 0 || len(b) < int(w.HdrLen)+int(w.TrlLen) {
		return ErrBadWESP
	}
	if err := setESP(b[off:], p); err != nil {
		return err
	}
	p.Kind = KindWESP
	p.WESP = w
	return nil
}
