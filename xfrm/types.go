package xfrm

import (
	"fmt"
	"net/netip"
)

// Mode is the IPsec mode of an SA or a policy template.
type Mode uint8

// Modes.
const (
	Transport Mode = modeTransport
	Tunnel    Mode = modeTunnel
)

// String returns "transport" or "tunnel".
func (m Mode) String() string {
	switch m {
	case Transport:
		return "transport"
	case Tunnel:
		return "tunnel"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Dir is the direction of a policy.
type Dir uint8

// Policy directions.
const (
	In  Dir = dirIn
	Out Dir = dirOut
	Fwd Dir = dirFwd
)

// String returns "in", "out" or "fwd", as ip xfrm writes them.
func (d Dir) String() string {
	switch d {
	case In:
		return "in"
	case Out:
		return "out"
	case Fwd:
		return "fwd"
	}
	return fmt.Sprintf("dir(%d)", uint8(d))
}

// Port is a port selector: the packets whose port p satisfies
// p&Mask == Port&Mask. A zero Mask matches every port.
type Port struct {
	Port, Mask uint16
}

// Selector is the traffic an SA or policy applies to (struct
// xfrm_selector). The zero Selector of an SA matches everything of the
// SA's address family.
type Selector struct {
	Src, Dst         netip.Prefix
	Proto            uint8 // IP protocol; 0 is any
	SrcPort, DstPort Port
}

// Algorithm is a kernel crypto algorithm with its key.
type Algorithm struct {
	// Name is the kernel's name, e.g. "hmac(sha256)" or
	// "rfc4106(gcm(aes))".
	Name string
	// Key is the key, followed by the salt or nonce where the algorithm
	// takes one.
	Key []byte
	// Bits is the truncation length of an integrity algorithm or the ICV
	// length of an AEAD, in bits; unused for encryption.
	Bits int
}

// Encap is the UDP encapsulation (RFC 3948) of an SA.
type Encap struct {
	SrcPort, DstPort uint16
}

// Lifetime are the volume limits of an SA; zero fields are off.
type Lifetime struct {
	SoftBytes, HardBytes     uint64
	SoftPackets, HardPackets uint64
}

// SA is an IPsec SA for XFRM_MSG_NEWSA.
type SA struct {
	Src, Dst netip.Addr // outer addresses
	SPI      uint32
	Mode     Mode
	// ReqID ties the SA to the policy templates with the same request
	// ID.
	ReqID    uint32
	Selector Selector
	// Exactly one of Crypt (with Auth) and AEAD is set.
	Crypt, Auth, AEAD *Algorithm
	Encap             *Encap // nil: plain ESP (IP protocol 50)
	// ReplayWindow is the anti-replay window in packets (a multiple of
	// 32, at most 4096); 0 turns replay protection off.
	ReplayWindow uint32
	ESN          bool // 64-bit extended sequence numbers (RFC 4304)
	Limits       Lifetime
}

// SAID names an SA: destination, SPI and protocol (ESP).
type SAID struct {
	Dst netip.Addr
	SPI uint32
}

// SAState is what the kernel reports about an SA (XFRM_MSG_GETSA, and
// expiries).
type SAState struct {
	Src, Dst netip.Addr
	SPI      uint32
	Mode     Mode
	ReqID    uint32
	// Bytes and Packets are counted by the kernel since the SA was
	// added; AddTime and UseTime are Unix seconds.
	Bytes, Packets    uint64
	AddTime, UseTime  uint64
	ReplayDrops       uint32 // packets dropped as replays
	IntegrityFailures uint32
	// Algorithms are the names of the algorithms as the kernel reports
	// them (keys omitted).
	Crypt, Auth, AEAD string
	Encap             *Encap
}

// Template is the SA a policy requires (struct xfrm_user_tmpl).
type Template struct {
	Src, Dst netip.Addr // outer addresses; both zero in transport mode
	Mode     Mode
	ReqID    uint32
}

// Policy is an IPsec policy for XFRM_MSG_NEWPOLICY.
type Policy struct {
	Selector Selector
	Dir      Dir
	Priority uint32 // lower values win
	Tmpl     Template
}

// Expire is an expiry the kernel reports (XFRM_MSG_EXPIRE): the SA has
// reached its soft limit, or its hard limit and was deleted.
type Expire struct {
	State SAState
	Hard  bool
}
