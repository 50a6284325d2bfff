package ike

import (
	"net/netip"

	"github.com/espy-dpi/espy/ike/message"
)

// Encapsulation says how ESP packets of an SA travel.
type Encapsulation uint8

// Encapsulations.
const (
	EncapNone Encapsulation = iota // IP protocol 50
	EncapUDP                       // RFC 3948 UDP encapsulation (NAT-T)
)

func (e Encapsulation) String() string {
	if e == EncapUDP {
		return "udp"
	}
	return "none"
}

// SAInfo describes one direction of an ESP Child SA as it appears on the
// wire, which is what a DPI flow cache needs to parse its packets.
type SAInfo struct {
	Src, Dst netip.Addr // outer addresses of packets carrying this SA
	SPI      uint32     // SPI in those packets (chosen by the receiver)
	Inbound  bool       // packets travel towards this host

	Encap            Encapsulation
	SrcPort, DstPort uint16 // UDP ports when Encap is EncapUDP

	EncrID      uint16 // ENCR_* transform ID
	EncrKeyBits int    // 0 where the algorithm has a fixed key size
	IntegID     uint16 // AUTH_* transform ID; AUTH_NONE for AEAD
	// Null is true when the ESP payload travels in clear: ENCR_NULL with an
	// integrity algorithm, or ENCR_NULL_AUTH_AES_GMAC (RFC 4543).
	Null   bool
	IVLen  int // bytes of explicit IV after the sequence number
	ICVLen int // bytes of ICV at the end of each packet
	ESN    bool
	Mode   Mode

	// Selectors of the traffic this SA carries, as local/remote of this
	// host.
	LocalTS, RemoteTS []message.Selector
}

// SARegistrar receives the Child SAs the stack establishes and removes. The
// integrator implements it with espy's flow cache. RegisterSA is called
// for both directions of each Child SA before it is used; an error makes
// the stack treat the Child SA as failed. Calls may come from any
// goroutine, never concurrently for the same SA.
type SARegistrar interface {
	RegisterSA(SAInfo) error
	UnregisterSA(SAInfo)
}
