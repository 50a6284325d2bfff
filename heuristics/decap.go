package heuristics

import (
	"net/netip"

	"github.com/espy-dpi/espy/packet"
)

// Inner is the cleartext a null flow's packet carries.
type Inner struct {
	// NextHeader is the ESP trailer's next header.
	NextHeader uint8
	// Datagram is the inner IP packet in tunnel mode (TFC padding after it
	// cut off), or the transport segment in transport mode.
	Datagram []byte
	// Src, Dst, Proto, SrcPort and DstPort are the inner 5-tuple: inner
	// addresses in tunnel mode, outer ones in transport mode. Ports are 0
	// for protocols without them.
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
}

// Decapsulate reads the cleartext of p under null verdict v. It reports
// false when p does not parse under v (a garbage packet, one whose next
// header is not one the engine knows, or a TFC dummy packet with next
// header 59, which carries nothing).
func Decapsulate(v *Verdict, p *packet.Packet, in *Inner) bool {
	if v.Class != Null {
		return false
	}
	var t trailer
	if !readNull(v, p.ESP, &t) || t.nh == 59 {
		return false
	}
	*in = Inner{NextHeader: t.nh, Datagram: t.payload, Proto: t.nh, Src: p.Src, Dst: p.Dst}
	l4 := t.payload
	switch t.nh {
	case 4:
		b := t.payload
		ihl, total := int(b[0]&0x0f)*4, int(b[2])<<8|int(b[3])
		if b[0]>>4 != 4 || ihl < 20 || total < ihl || total > len(b) {
			return false
		}
		in.Datagram = b[:total]
		in.Src = netip.AddrFrom4([4]byte(b[12:16]))
		in.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		in.Proto = b[9]
		if (int(b[6])<<8|int(b[7]))&0x1fff != 0 { // not the first fragment: no ports
			return true
		}
		l4 = b[ihl:total]
	case 41:
		b := t.payload
		total := 40 + (int(b[4])<<8 | int(b[5]))
		if b[0]>>4 != 6 || total > len(b) {
			return false
		}
		in.Datagram = b[:total]
		in.Src = netip.AddrFrom16([16]byte(b[8:24]))
		in.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		in.Proto = b[6]
		l4 = b[40:total]
	}
	switch in.Proto {
	case 6, 17, 132:
		if len(l4) >= 4 {
			in.SrcPort = uint16(l4[0])<<8 | uint16(l4[1])
			in.DstPort = uint16(l4[2])<<8 | uint16(l4[3])
		}
	}
	return true
}
