// Package packet decodes captured frames down to the ESP header without
// copying: link layer (Ethernet with up to two VLAN tags, Linux SLL and SLL2,
// raw IP, BSD loopback), outer IPv4 with options and IPv6 with extension
// headers, and the ESP carriers: IP protocol 50, ESP in UDP (RFC 3948),
// ESP in TCP (RFC 9329 framing) and WESP (RFC 5840).
//
// A Decoder is reused across packets and fills a caller-owned Packet whose
// slices point into the frame; nothing is allocated per packet. The decoder
// is deliberately hand-written rather than built on gopacket's layer
// decoders: it stops at the ESP header, never decodes what it does not need,
// and reports why a frame is not ESP with an exact sentinel error. Tests
// cross-check it against gopacket's decoding of the same frames.
//
// Outer IP fragments are not reassembled: a fragment is reported as
// KindFragment and counted by the caller as unparsed. ESP over fragmented IP
// is rare (IPsec gateways fragment the inner packet before encapsulation or
// use PMTU discovery), and reassembly would need per-flow buffers that an
// attacker could fill.
package packet
