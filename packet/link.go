package packet

// LinkType is a LINKTYPE_ value from a capture file's header.
type LinkType uint16

// Link types the decoder understands.
const (
	LinkTypeNull      LinkType = 0   // BSD loopback, host-order address family
	LinkTypeEthernet  LinkType = 1   // IEEE 802.3 Ethernet
	LinkTypeRawAlt12  LinkType = 12  // raw IP on some BSDs
	LinkTypeRawAlt14  LinkType = 14  // raw IP on OpenBSD
	LinkTypeRaw       LinkType = 101 // raw IPv4 or IPv6
	LinkTypeLoop      LinkType = 108 // OpenBSD loopback, network-order family
	LinkTypeLinuxSLL  LinkType = 113 // Linux cooked capture v1
	LinkTypeIPv4      LinkType = 228 // raw IPv4
	LinkTypeIPv6      LinkType = 229 // raw IPv6
	LinkTypeLinuxSLL2 LinkType = 276 // Linux cooked capture v2
)

// EtherTypes the decoder follows.
const (
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherTypeVLAN   = 0x8100
	etherTypeQinQ   = 0x88a8
	etherTypeQinQ2  = 0x9100 // pre-standard QinQ, still seen on the wire
	maxVLANTags     = 2
	ethernetHdrLen  = 14
	vlanTagLen      = 4
	sllHdrLen       = 16
	sll2HdrLen      = 20
	loopbackHdrLen  = 4
	bsdAFInet       = 2
	bsdAFInet6BSD   = 24 // NetBSD, OpenBSD
	bsdAFInet6Free  = 28 // FreeBSD
	bsdAFInet6Apple = 30 // Darwin
	bsdAFInet6Linux = 10 // Linux AF_INET6, seen in some converted captures
)

// network strips the link-layer header of frame and returns the network
// layer bytes and the EtherType-equivalent of what they hold.
func (d *Decoder) network(lt LinkType, frame []byte, p *Packet) ([]byte, uint16, error) {
	switch lt {
	case LinkTypeEthernet:
		if len(frame) < ethernetHdrLen {
			return nil, 0, ErrTruncated
		}
		et := be16(frame[12:])
		b := frame[ethernetHdrLen:]
		for et == etherTypeVLAN || et == etherTypeQinQ || et == etherTypeQinQ2 {
			if p.VLANs == maxVLANTags {
				return nil, 0, ErrTooManyVLANs
			}
			if len(b) < vlanTagLen {
				return nil, 0, ErrTruncated
			}
			p.VLAN[p.VLANs] = be16(b) & 0x0fff
			p.VLANs++
			et = be16(b[2:])
			b = b[vlanTagLen:]
		}
		return b, et, nil
	case LinkTypeLinuxSLL:
		if len(frame) < sllHdrLen {
			return nil, 0, ErrTruncated
		}
		return frame[sllHdrLen:], be16(frame[14:]), nil
	case LinkTypeLinuxSLL2:
		if len(frame) < sll2HdrLen {
			return nil, 0, ErrTruncated
		}
		return frame[sll2HdrLen:], be16(frame[0:]), nil
	case LinkTypeRaw, LinkTypeRawAlt12, LinkTypeRawAlt14:
		if len(frame) < 1 {
			return nil, 0, ErrTruncated
		}
		switch frame[0] >> 4 {
		case 4:
			return frame, etherTypeIPv4, nil
		case 6:
			return frame, etherTypeIPv6, nil
		}
		return nil, 0, ErrNotIP
	case LinkTypeIPv4:
		return frame, etherTypeIPv4, nil
	case LinkTypeIPv6:
		return frame, etherTypeIPv6, nil
	case LinkTypeNull, LinkTypeLoop:
		if len(frame) < loopbackHdrLen {
			return nil, 0, ErrTruncated
		}
		// LINKTYPE_NULL stores the family in the capturing host's byte
		// order, which the file does not record; the value is small, so
		// whichever end holds it tells the order.
		af := uint32(frame[0]) | uint32(frame[1])<<8 | uint32(frame[2])<<16 | uint32(frame[3])<<24
		if lt == LinkTypeLoop || af > 0xffff {
			af = uint32(frame[0])<<24 | uint32(frame[1])<<16 | uint32(frame[2])<<8 | uint32(frame[3])
		}
		switch af {
		case bsdAFInet:
			return frame[loopbackHdrLen:], etherTypeIPv4, nil
		case bsdAFInet6BSD, bsdAFInet6Free, bsdAFInet6Apple, bsdAFInet6Linux:
			return frame[loopbackHdrLen:], etherTypeIPv6, nil
		}
		return nil, 0, ErrNotIP
	}
	return nil, 0, ErrUnsupportedLinkType
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// Supported reports whether the decoder understands link type lt.
func Supported(lt LinkType) bool {
	switch lt {
	case LinkTypeNull, LinkTypeEthernet, LinkTypeRawAlt12, LinkTypeRawAlt14, LinkTypeRaw,
		LinkTypeLoop, LinkTypeLinuxSLL, LinkTypeIPv4, LinkTypeIPv6, LinkTypeLinuxSLL2:
		return true
	}
	return false
}
