package espsynth

import (
	"errors"
	"fmt"
	"net/netip"
)

// IPVersion selects IPv4 or IPv6. The zero value means IPv4.
type IPVersion uint8

// IP versions.
const (
	IPv4 IPVersion = 4
	IPv6 IPVersion = 6
	// Dual, for the inner datagrams of a tunnel, mixes IPv4 and IPv6.
	Dual IPVersion = 46
)

func (v IPVersion) is6() bool { return v == IPv6 }

// Mode is the ESP mode of a flow.
type Mode uint8

// ESP modes. The zero value is transport mode.
const (
	// Transport mode: ESP protects the transport segment of the outer packet.
	Transport Mode = iota
	// Tunnel mode: ESP carries a whole inner IP datagram.
	Tunnel
)

// String returns "transport" or "tunnel".
func (m Mode) String() string {
	if m == Tunnel {
		return "tunnel"
	}
	return "transport"
}

// Encap is how ESP rides on the wire.
type Encap uint8

// Encapsulations. The zero value is plain ESP (IP protocol 50).
const (
	// EncapNone sends ESP as IP protocol 50.
	EncapNone Encap = iota
	// EncapUDP sends ESP in UDP on port 4500 (RFC 3948).
	EncapUDP
)

// String returns "none" or "udp".
func (e Encap) String() string {
	if e == EncapUDP {
		return "udp"
	}
	return "none"
}

// Padding is a flow's padding policy.
type Padding uint8

// Padding policies. The zero value is minimal padding.
const (
	// PaddingMinimal pads with 1, 2, 3, … just up to the cipher's alignment.
	PaddingMinimal Padding = iota
	// PaddingExtra adds a random amount of further 1, 2, 3, … padding, up
	// to 255 bytes in all, to hide payload lengths.
	PaddingExtra
	// PaddingTFC appends random Traffic Flow Confidentiality padding after
	// the inner datagram (RFC 4303 section 2.4); tunnel mode only.
	PaddingTFC
)

// String returns "minimal", "extra" or "tfc".
func (p Padding) String() string {
	switch p {
	case PaddingExtra:
		return "extra"
	case PaddingTFC:
		return "tfc"
	}
	return "minimal"
}

// Flow describes one IPsec session between an initiator and a responder:
// two SAs, one per direction, that carry one inner conversation. Each SA is
// one ESP flow on the wire and gets its own Label. Zero-valued addresses
// and SPIs are drawn at random.
type Flow struct {
	// Outer is the IP version of the outer (ESP-carrying) packets.
	Outer IPVersion
	// Initiator and Responder are the outer addresses; with Tunnel they are
	// the gateways. Drawn from the documentation ranges when zero.
	Initiator, Responder netip.Addr
	// SPI holds the SPI of the initiator-to-responder SA and of the reverse
	// SA. Zero draws a random SPI above 255 (RFC 4303 reserves 1 to 255).
	SPI [2]uint32
	// Encap selects plain ESP or ESP in UDP.
	Encap Encap
	// NAT, with EncapUDP, puts the initiator behind a NAT: it sends from a
	// random source port instead of 4500.
	NAT bool
	// Mode is transport or tunnel.
	Mode Mode
	// Inner is the IP version of the inner datagrams in tunnel mode; Dual
	// carries one conversation over IPv4 and another over IPv6.
	Inner IPVersion
	// Traffic is the inner conversation.
	Traffic Traffic
	// Cipher and Auth are the ESP transforms. Auth is ignored with the
	// combined-mode ciphers (AES-GCM, ChaCha20-Poly1305, AES-GMAC).
	Cipher Cipher
	Auth   Auth
	// ICVLen is the AES-GCM tag length: 8, 12 or 16 (0 means 16).
	ICVLen int
	// Padding is the padding policy.
	Padding Padding
	// Dummy interleaves dummy packets (next header 59, random content) with
	// the real ones, about one in eight.
	Dummy bool
	// Packets is the number of ESP packets of the session, both directions
	// together; at least 2 unless OneWay.
	Packets int
	// OneWay sends only in the initiator-to-responder SA, so the session
	// makes a single flow.
	OneWay bool
	// Rekeys replaces the SAs with freshly keyed ones (new SPIs, sequence
	// numbers from 1) this many times, at even intervals, while the inner
	// conversation goes on. Every SA is a flow of its own.
	Rekeys int
	// Tags are added to the labels of the session's flows.
	Tags []string
}

// Flows is the number of ESP flows (SAs) the session puts on the wire.
func (f *Flow) Flows() int { return f.sas() * (f.Rekeys + 1) }

// sas is the number of SAs in use at a time.
func (f *Flow) sas() int {
	if f.OneWay {
		return 1
	}
	return 2
}

// validate reports the first inconsistency in a flow description.
func (f *Flow) validate() error {
	switch {
	case f.Outer != 0 && f.Outer != IPv4 && f.Outer != IPv6:
		return fmt.Errorf("outer IP version %d", f.Outer)
	case f.Inner != 0 && f.Inner != IPv4 && f.Inner != IPv6 && f.Inner != Dual:
		return fmt.Errorf("inner IP version %d", f.Inner)
	case f.Cipher >= numCiphers:
		return fmt.Errorf("unknown cipher %d", f.Cipher)
	case f.Auth >= numAuths:
		return fmt.Errorf("unknown integrity algorithm %d", f.Auth)
	case f.Traffic >= numTraffic:
		return fmt.Errorf("unknown traffic kind %d", f.Traffic)
	case f.Padding > PaddingTFC:
		return fmt.Errorf("unknown padding %d", f.Padding)
	case f.Padding == PaddingTFC && f.Mode != Tunnel:
		return errors.New("TFC padding needs tunnel mode: only an inner IP header tells the receiver where the datagram ends")
	case f.Rekeys < 0:
		return fmt.Errorf("%d rekeys", f.Rekeys)
	case f.Packets < f.Flows():
		return fmt.Errorf("%d packets cannot fill %d SAs", f.Packets, f.Flows())
	case f.Cipher == CipherAESGCM && f.ICVLen != 0 && f.ICVLen != 8 && f.ICVLen != 12 && f.ICVLen != 16:
		return fmt.Errorf("AES-GCM ICV length %d, want 8, 12 or 16", f.ICVLen)
	case f.Initiator.IsValid() != f.Responder.IsValid():
		return errors.New("set both outer addresses or neither")
	case f.Initiator.IsValid() && (f.Initiator.Is4() != !f.Outer.is6() || f.Responder.Is4() != !f.Outer.is6()):
		return errors.New("outer addresses do not match the outer IP version")
	case f.NAT && f.Encap != EncapUDP:
		return errors.New("NAT needs UDP encapsulation")
	}
	return nil
}
