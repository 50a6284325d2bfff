package packet

import (
	"errors"
	"net/netip"
)

// Kind says what a decoded frame carries.
type Kind uint8

// Frame kinds. Only KindESP and KindWESP carry an ESP header in Packet.ESP.
const (
	KindOther     Kind = iota // IP, but no ESP carrier
	KindESP                   // an ESP packet (plain, in UDP or in TCP)
	KindWESP                  // an ESP packet wrapped in WESP (RFC 5840)
	KindIKE                   // IKE on the NAT-T port behind the non-ESP marker
	KindKeepalive             // NAT-T keepalive (RFC 3948: one 0xFF byte)
	KindFragment              // an outer IP fragment, not reassembled
)

var kindNames = [...]string{"other", "esp", "wesp", "ike", "keepalive", "fragment"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "invalid"
}

// Encap says how ESP travelled.
type Encap uint8

// ESP carriers.
const (
	EncapNone Encap = iota // IP protocol 50 (or WESP, protocol 141)
	EncapUDP               // UDP, RFC 3948
	EncapTCP               // TCP, RFC 9329
)

var encapNames = [...]string{"none", "udp", "tcp"}

func (e Encap) String() string {
	if int(e) < len(encapNames) {
		return encapNames[e]
	}
	return "invalid"
}

// IP protocol numbers the decoder dispatches on.
const (
	ProtoHopByHop = 0
	ProtoICMP     = 1
	ProtoIPIP     = 4
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoIPv6     = 41
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoGRE      = 47
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ProtoDstOpts  = 60
	ProtoSCTP     = 132
	ProtoWESP     = 141
)

// Sentinel errors for frames that cannot be decoded. They are returned
// unwrapped so the per-packet path does not allocate.
var (
	ErrTruncated           = errors.New("packet: truncated")
	ErrUnsupportedLinkType = errors.New("packet: unsupported link type")
	ErrNotIP               = errors.New("packet: not IPv4 or IPv6")
	ErrBadIPHeader         = errors.New("packet: malformed IP header")
	ErrTooManyVLANs        = errors.New("packet: more than two VLAN tags")
	ErrTooManyExtHeaders   = errors.New("packet: too many IPv6 extension headers")
	ErrBadESP              = errors.New("packet: ESP shorter than its header")
	ErrBadWESP             = errors.New("packet: malformed WESP header")
)

// WESP is the RFC 5840 header in front of a wrapped ESP packet.
type WESP struct {
	NextHeader uint8 // the inner protocol, or 0 when Encrypted
	HdrLen     uint8 // from the WESP header to the protected payload (after the IV)
	TrlLen     uint8 // the ICV length
	Flags      uint8
}

// WESP flag bits (RFC 5840 section 2.2).
const (
	WESPFlagEncrypted = 0x20
	WESPFlagPadding   = 0x10
	wespVersionMask   = 0xc0
)

// Encrypted reports the E bit: the payload is encrypted.
func (w WESP) Encrypted() bool { return w.Flags&WESPFlagEncrypted != 0 }

// IVLen is the IV length that HdrLen implies.
func (w WESP) IVLen() int {
	n := int(w.HdrLen) - wespHdrLen - espHdrLen
	if w.Flags&WESPFlagPadding != 0 {
		n -= wespPadLen
	}
	return n
}

const (
	wespHdrLen = 4
	wespPadLen = 4
	espHdrLen  = 8
)

// Packet is a decoded frame. Slices point into the decoded frame and are
// valid as long as it is.
type Packet struct {
	Kind     Kind
	Src, Dst netip.Addr // outer IP addresses
	Encap    Encap
	SrcPort  uint16 // carrier ports for EncapUDP and EncapTCP
	DstPort  uint16
	VLANs    int
	VLAN     [maxVLANTags]uint16
	// IPHeader is the outer IP header including IPv6 extension headers.
	IPHeader []byte
	// ESP holds the ESP packet from the SPI to the end of the IP datagram
	// (link-layer padding excluded) for KindESP and KindWESP.
	ESP  []byte
	WESP WESP // valid for KindWESP
}

// SPI returns the ESP Security Parameters Index.
func (p *Packet) SPI() uint32 { return be32(p.ESP) }

// Seq returns the ESP sequence number.
func (p *Packet) Seq() uint32 { return be32(p.ESP[4:]) }

// IsIPv6 reports whether the outer header is IPv6.
func (p *Packet) IsIPv6() bool { return p.Src.Is6() }
