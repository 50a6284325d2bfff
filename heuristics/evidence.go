package heuristics

import "strings"

// Evidence is a set of checks that held on a flow's packets.
type Evidence uint32

// Evidence bits. Each names a check; the bits of evidence each is worth are
// documented where it is awarded (inner.go, candidate.go).
const (
	EvPad               Evidence = 1 << iota // pad bytes 1,2,…,N and 4-byte alignment
	EvNextHeader                             // next header from RFC 5879's set
	EvIPv4Header                             // inner IPv4 version and IHL
	EvIPv4Length                             // inner IPv4 total length fits the payload exactly
	EvIPv4Checksum                           // inner IPv4 header checksum valid
	EvIPv6Header                             // inner IPv6 version and next header
	EvIPv6Length                             // inner IPv6 payload length fits exactly
	EvTCPHeader                              // TCP data offset and flags consistent
	EvTCPChecksum                            // TCP checksum valid
	EvTCPFields                              // ACK/URG clear with zero ack number/urgent pointer
	EvTCPSequence                            // TCP sequence continues an earlier packet's
	EvUDPLength                              // UDP length fits exactly
	EvUDPChecksum                            // UDP checksum valid
	EvICMPType                               // ICMP/ICMPv6 type and code defined
	EvICMPChecksum                           // ICMP/ICMPv6 checksum valid
	EvICMPQuote                              // ICMP error quotes an IP header
	EvSCTPChunks                             // SCTP chunk lengths add up
	EvSCTPChecksum                           // SCTP CRC32c valid
	EvGRE                                    // GRE version and protocol type
	EvContinuity                             // same inner ports as an earlier packet
	EvDummy                                  // next header 59 (TFC dummy packet)
	EvSeqIncreasing                          // ESP sequence numbers increase
	EvWESP                                   // WESP header consistent with the trailer
	EvWESPMismatch                           // WESP header contradicts the trailer
	EvRekey                                  // inner flows match a known null flow
	EvUnknownNextHeader                      // a valid trailer with a next header outside the set
	EvKnown                                  // registered by the SA's owner
)

var evidenceNames = [...]string{
	"pad", "next-header", "ipv4-header", "ipv4-length", "ipv4-checksum",
	"ipv6-header", "ipv6-length", "tcp-header", "tcp-checksum", "tcp-fields",
	"tcp-sequence", "udp-length", "udp-checksum", "icmp-type", "icmp-checksum",
	"icmp-quote", "sctp-chunks", "sctp-checksum", "gre", "continuity", "dummy",
	"seq-increasing", "wesp", "wesp-mismatch", "rekey", "unknown-next-header",
	"known",
}

// Names returns the names of the checks in e, in bit order.
func (e Evidence) Names() []string {
	var out []string
	for i, n := range evidenceNames {
		if e&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// AppendNames appends the names of e as a JSON array of strings to dst.
func (e Evidence) AppendJSON(dst []byte) []byte {
	dst = append(dst, '[')
	first := true
	for i, n := range evidenceNames {
		if e&(1<<i) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, n...)
		dst = append(dst, '"')
	}
	return append(dst, ']')
}

func (e Evidence) String() string { return strings.Join(e.Names(), ",") }
