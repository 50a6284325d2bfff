package policy

import (
	"fmt"
	"sort"
)

// Mode says how a policy treats rules that overlap.
type Mode uint8

// Overlap modes.
const (
	// ModeOrdered consults rules in precedence order; the first match wins.
	ModeOrdered Mode = iota
	// ModeForbid rejects a policy in which any two rules overlap.
	ModeForbid
	// ModeDecorrelated rewrites the ordered rules into disjoint entries
	// (RFC 4301 section 4.4.1) so that order no longer matters.
	ModeDecorrelated
)

var modeNames = [...]string{ModeOrdered: "ordered", ModeForbid: "forbid", ModeDecorrelated: "decorrelated"}

// String returns the configuration name of m.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode returns the mode named s.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if n == s {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown mode %q (want forbid, ordered or decorrelated)", ErrSyntax, s)
}

// DefaultMaxEntries bounds decorrelation when the configuration sets no limit.
const DefaultMaxEntries = 1 << 18

// MaxLabelLen is the longest security label espy accepts, in octets. RFC 9478
// leaves the length to the label format; 256 octets holds any SELinux
// context espy has reason to see while keeping per-rule state small.
const MaxLabelLen = 256

// Policy is a parsed, validated SPD.
type Policy struct {
	// Mode is the overlap mode.
	Mode Mode
	// MaxEntries bounds the number of decorrelated entries.
	MaxEntries int
	// Rules in precedence order: Rules[i] is consulted before Rules[i+1].
	Rules []Rule
	// Labels maps label identifiers to labels: identifier i+1 is Labels[i];
	// identifier 0 is an unlabelled packet.
	Labels []string
}

// LabelID returns the identifier of a security label, as used in Packet.Label.
func (p *Policy) LabelID(label string) (uint32, bool) {
	for i, l := range p.Labels {
		if l == label {
			return uint32(i + 1), true
		}
	}
	return 0, false
}

// sortRules puts rules in precedence order, keeping file order for ties.
func sortRules(rules []Rule) {
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].Precedence < rules[j].Precedence })
}

// Lookup returns the verdict of the first rule, in precedence order, that
// matches p: the reference semantics every other classifier must reproduce.
// It is a plain linear scan.
func (p *Policy) Lookup(pkt *Packet) Verdict {
	return LinearLookup(p.Rules, pkt)
}

// LinearLookup returns the verdict of the first rule in rules that matches p.
func LinearLookup(rules []Rule, pkt *Packet) Verdict {
	for i := range rules {
		if rules[i].Box.Contains(pkt) {
			return rules[i].Verdict(i)
		}
	}
	return NoMatch
}
