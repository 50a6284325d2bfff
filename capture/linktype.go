package capture

// LINKTYPE_ values (https://www.tcpdump.org/linktypes.html) that espy decodes.
// A Reader reports any link type it finds; it does not reject the others.
const (
	LinkTypeNull      uint16 = 0   // BSD loopback, host-order 4-byte address family
	LinkTypeEthernet  uint16 = 1   // IEEE 802.3 Ethernet
	LinkTypeRaw12     uint16 = 12  // raw IP, as DLT_RAW is numbered on most BSDs
	LinkTypeRaw14     uint16 = 14  // raw IP, as DLT_RAW is numbered on OpenBSD
	LinkTypeRaw       uint16 = 101 // raw IPv4 or IPv6, version from the first nibble
	LinkTypeLoop      uint16 = 108 // OpenBSD loopback, network-order 4-byte address family
	LinkTypeLinuxSLL  uint16 = 113 // Linux cooked capture v1
	LinkTypeIPv4      uint16 = 228 // raw IPv4
	LinkTypeIPv6      uint16 = 229 // raw IPv6
	LinkTypeLinuxSLL2 uint16 = 276 // Linux cooked capture v2
)
