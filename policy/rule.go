package policy

import (
	"fmt"
	"net/netip"
)

// Action is what a matching rule does with a packet.
type Action uint8

// Actions. The first three are the RFC 4301 SPD actions; the rest are the
// inspection verdicts of espy's DPI path.
const (
	ActionNone    Action = iota // no rule matched
	ActionProtect               // PROTECT: apply the referenced SA/tunnel
	ActionBypass                // BYPASS: pass without IPsec
	ActionDiscard               // DISCARD: drop
	ActionAllow                 // inspection: allow
	ActionDrop                  // inspection: drop
	ActionLog                   // inspection: allow, log and count
	numActions
)

var actionNames = [numActions]string{"none", "protect", "bypass", "discard", "allow", "drop", "log"}

// String returns the configuration name of a.
func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// ParseAction returns the action named s; "count" is an alias of "log".
func ParseAction(s string) (Action, error) {
	if s == "count" {
		return ActionLog, nil
	}
	for i, n := range actionNames {
		if i != int(ActionNone) && n == s {
			return Action(i), nil
		}
	}
	return ActionNone, fmt.Errorf("%w: %q (want protect, bypass, discard, allow, drop, log or count)", ErrUnknownAction, s)
}

// Verdict is the result of a lookup: the action, the SA or tunnel reference
// for PROTECT, and the index of the rule that decided it (-1: none matched).
type Verdict struct {
	Action Action
	SA     string
	// Rule is the index of the deciding rule in the rule list the lookup
	// structure was built from; Name is its name, stable across updates.
	Rule int
	Name string
}

// NoMatch is the verdict when no rule matches.
var NoMatch = Verdict{Action: ActionNone, Rule: -1}

// Rule is one SPD entry as configured: its selectors as a box plus the action.
type Rule struct {
	// Name identifies the rule in reports; unique within a policy.
	Name string
	// Precedence orders rules: lower values are consulted first.
	Precedence int
	// Box is the set of packets the rule's selectors match.
	Box Box
	// Action is applied to matching packets.
	Action Action
	// SA names the tunnel or SA for ActionProtect, empty otherwise.
	SA string
	// Line is the rule's line in its source file (0 when built in code).
	Line int
}

// Verdict returns the verdict rule r, at index i, gives a matching packet.
func (r *Rule) Verdict(i int) Verdict {
	return Verdict{Action: r.Action, SA: r.SA, Rule: i, Name: r.Name}
}

// Packet is the lookup key: the selector fields of one packet. For ICMP and
// ICMPv6 the source port must hold type<<8|code and the destination port 0
// (IKEv2 encodes ICMP in the port fields, RFC 7296 section 3.13.1);
// decorrelation drops ICMP pieces that a packet built this way cannot hit.
// Protocols without ports carry ports 0.
type Packet struct {
	Src, Dst     U128
	Label        uint32
	SPort, DPort uint16
	Family       uint8
	Proto        uint8
}

// NewPacket builds a lookup key from addresses of one family; for ICMP and
// ICMPv6, sport is type<<8|code and dport is ignored.
func NewPacket(src, dst netip.Addr, proto uint8, sport, dport uint16) Packet {
	fam := uint8(6)
	if src.Is4() {
		fam = 4
	}
	if isICMP(proto) {
		dport = 0
	}
	return Packet{Family: fam, Src: AddrU128(src), Dst: AddrU128(dst), Proto: proto, SPort: sport, DPort: dport}
}

// String formats p for reports.
func (p Packet) String() string {
	s := fmt.Sprintf("%s -> %s proto %d sport %d dport %d", U128Addr(p.Family, p.Src), U128Addr(p.Family, p.Dst), p.Proto, p.SPort, p.DPort)
	if p.Label != 0 {
		s += fmt.Sprintf(" label %d", p.Label)
	}
	return s
}

// NewPacketFromStrings is NewPacket with textual addresses; it panics on a
// malformed address and is meant for tests and examples.
func NewPacketFromStrings(src, dst string, proto uint8, sport, dport uint16) Packet {
	return NewPacket(netip.MustParseAddr(src), netip.MustParseAddr(dst), proto, sport, dport)
}
