package flowcache

import (
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
)

// Flow is the state of a flow: its verdict and counters. Every decided flow
// stores one, so it is kept to 72 bytes (112 with its key).
type Flow struct {
	Packets uint64
	Bytes   uint64
	First   int64 // Unix nanoseconds of the first packet
	Last    int64 // Unix nanoseconds of the latest packet
	Verdict heuristics.Verdict
	Monitor heuristics.Monitor
	Encap   packet.Encap // carrier of the latest packet
	Flags   uint8
	SrcPort uint16 // carrier ports of the latest packet
	DstPort uint16
	// refs counts, saturating, the times the flow was seen after its
	// decision: a packet through Process, or a look of the fast path's
	// that found packets (Touch, SetCounters). Eviction ranks by it
	// (table.victim). It fills Flow's padding.
	refs uint8
}

// ref records one more sighting of a decided flow.
func (f *Flow) ref() {
	if f.refs < 255 {
		f.refs++
	}
}

// Flow flags.
const (
	// FlagMoved: the flow was seen on more than one carrier (plain and
	// UDP-encapsulated, or several NAT ports).
	FlagMoved uint8 = 1 << iota
	// FlagWESP: the flow's packets are wrapped in WESP.
	FlagWESP
)

func (f *Flow) account(p *packet.Packet, length int, now int64) {
	if f.Packets == 0 {
		f.First = now
		f.Encap, f.SrcPort, f.DstPort = p.Encap, p.SrcPort, p.DstPort
	} else if f.Encap != p.Encap || f.SrcPort != p.SrcPort || f.DstPort != p.DstPort {
		f.Flags |= FlagMoved
		f.Encap, f.SrcPort, f.DstPort = p.Encap, p.SrcPort, p.DstPort
	}
	if p.Kind == packet.KindWESP {
		f.Flags |= FlagWESP
	}
	f.Packets++
	f.Bytes += uint64(length)
	f.Last = now
}
