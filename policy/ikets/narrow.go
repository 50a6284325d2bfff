package ikets

import (
	"fmt"

	"github.com/espy-dpi/espy/policy"
)

// pieceLimit bounds the box arithmetic of one narrowing decision.
const pieceLimit = 1 << 14

// Result is the outcome of narrowing: the selectors to answer with, and the
// SPD rule that protects them.
type Result struct {
	// TSi and TSr are the responder's narrowed selectors (one each: the
	// cross product of longer lists could cover traffic the SPD routes
	// elsewhere).
	TSi, TSr Selectors
	// Rule and SA name the PROTECT rule and its SA or tunnel.
	Rule, SA string
	// Narrowed is false when the proposal was accepted unchanged.
	Narrowed bool
}

// region is part of a proposal and the rule the SPD gives it.
type region struct {
	box  policy.Box
	rule int
}

// regions splits box b by the ordered rules: each piece is matched first by
// the given rule. Parts no rule matches are left out.
func regions(rules []policy.Rule, b policy.Box) ([]region, error) {
	var out []region
	var cover []policy.Box
	for i := range rules {
		x, ok := rules[i].Box.Intersect(&b)
		if !ok {
			continue
		}
		pieces, err := policy.Subtract(x, cover, pieceLimit)
		if err != nil {
			return nil, err
		}
		for _, p := range pieces {
			out = append(out, region{p, i})
		}
		cover = append(cover, x)
		if x == b {
			break
		}
	}
	return out, nil
}

// Narrow is the responder's decision on a CHILD_SA proposal: the initiator's
// TSi (its side, our remote) and TSr (our local side) against the ordered
// SPD. labels maps a security label to its identifier, as Policy.LabelID.
//
// When the first selector of each list is a single packet (RFC 7296 section
// 2.9), the rule that packet matches decides; otherwise the first PROTECT
// rule that matches any part of the proposal does. The answer is the largest
// part of the proposal that this rule gets under first-match semantics, so
// installing it never steals traffic from another rule. ErrUnacceptable is
// returned when no part of the proposal is protected.
func Narrow(rules []policy.Rule, labels func(string) (uint32, bool), tsi, tsr Selectors) (Result, error) {
	if err := validate(tsi, tsr); err != nil {
		return Result{}, err
	}
	labelID, labelled := uint32(0), tsi.Label != "" || tsr.Label != ""
	if labelled {
		if tsi.Label != tsr.Label {
			return Result{}, fmt.Errorf("%w: TSi label %q and TSr label %q differ", ErrUnacceptable, tsi.Label, tsr.Label)
		}
		id, ok := labels(tsi.Label)
		if !ok {
			return Result{}, fmt.Errorf("%w: security label %q is in no policy", ErrUnacceptable, tsi.Label)
		}
		labelID = id
	}
	var trig *policy.Packet
	if p, ok := trigger(tsi.TS[0], tsr.TS[0], labelID); ok {
		trig = &p
	}
	var all []region
	whole := 0
	for _, r := range tsr.TS {
		for _, i := range tsi.TS {
			b, ok := pairBox(r, i, labelID, labelled)
			if !ok {
				continue
			}
			whole++
			rs, err := regions(rules, b)
			if err != nil {
				return Result{}, fmt.Errorf("ikets: narrow: %w", err)
			}
			all = append(all, rs...)
		}
	}
	chosen := -1
	if trig != nil {
		v := policy.LinearLookup(rules, trig)
		if v.Rule < 0 || v.Action != policy.ActionProtect {
			return Result{}, fmt.Errorf("%w: the triggering packet %s is not protected (rule %q, %s)", ErrUnacceptable, trig, v.Name, v.Action)
		}
		chosen = v.Rule
	} else {
		for _, rg := range all {
			if rules[rg.rule].Action == policy.ActionProtect && (chosen < 0 || rg.rule < chosen) {
				chosen = rg.rule
			}
		}
	}
	if chosen < 0 {
		return Result{}, fmt.Errorf("%w: no PROTECT rule matches the proposal", ErrUnacceptable)
	}
	// Pieces of the same SA are equally good; prefer the one holding the
	// trigger, then the largest.
	best, bestVol, pieces := -1, -1.0, 0
	prefer := uint8(0)
	if trig != nil {
		prefer = trig.Proto
	}
	for k, rg := range all {
		r := &rules[rg.rule]
		if r.Action != policy.ActionProtect || r.SA != rules[chosen].SA {
			continue
		}
		pieces++
		if _, _, ok := boxTS(rg.box, prefer); !ok {
			continue
		}
		vol := rg.box.Log2Volume()
		if trig != nil && rg.box.Contains(trig) {
			vol = 1e9
		}
		if vol > bestVol {
			best, bestVol = k, vol
		}
	}
	if best < 0 {
		return Result{}, fmt.Errorf("%w: the protected part of the proposal has no selector form", ErrUnacceptable)
	}
	local, remote, _ := boxTS(all[best].box, prefer)
	res := Result{
		TSi:  Selectors{TS: []TS{remote}, Label: tsi.Label},
		TSr:  Selectors{TS: []TS{local}, Label: tsr.Label},
		Rule: rules[all[best].rule].Name, SA: rules[all[best].rule].SA,
	}
	res.Narrowed = !(whole == 1 && pieces == 1 && len(all) == 1 && len(tsi.TS) == 1 && len(tsr.TS) == 1 &&
		local == tsr.TS[0] && remote == tsi.TS[0])
	return res, nil
}

func validate(tsi, tsr Selectors) error {
	if len(tsi.TS) == 0 || len(tsr.TS) == 0 {
		return fmt.Errorf("%w: empty selector list", ErrBadTS)
	}
	for _, l := range []Selectors{tsi, tsr} {
		if len(l.Label) > policy.MaxLabelLen {
			return fmt.Errorf("%w: security label of %d octets, at most %d", ErrBadTS, len(l.Label), policy.MaxLabelLen)
		}
		for _, t := range l.TS {
			if err := t.Validate(); err != nil {
				return err
			}
		}
	}
	return nil
}

// trigger returns the packet described by a pair of single-point
// selectors.
func trigger(remote, local TS, label uint32) (policy.Packet, bool) {
	if remote.Start != remote.End || local.Start != local.End || remote.Protocol == 0 || remote.Protocol != local.Protocol ||
		remote.StartPort != remote.EndPort || local.StartPort != local.EndPort || remote.Type != local.Type {
		return policy.Packet{}, false
	}
	p := policy.NewPacket(local.Start, remote.Start, local.Protocol, local.StartPort, remote.StartPort)
	if p.Proto == policy.ProtoICMP || p.Proto == policy.ProtoICMPv6 {
		p.DPort = 0
	}
	p.Label = label
	return p, true
}

// Rekey reports whether an installed CHILD_SA must be rekeyed after an SPD
// change.
type Rekey struct {
	// Needed is true when part of the SA's selectors is now routed by
	// another rule (or by none).
	Needed bool
	// Lost names the rules that now take part of the SA's traffic.
	Lost []string
	// TSi and TSr are the narrowed selectors to rekey with; empty lists
	// when no part of the SA's traffic is still protected by it (delete the
	// SA instead).
	TSi, TSr Selectors
}

// CheckChildSA checks a CHILD_SA's selectors (as negotiated: TSi remote, TSr
// local) against the current ordered rules: every packet they cover must
// still be routed to sa by a PROTECT rule. When a newer, higher-precedence
// rule routes part of it elsewhere, the SA must be rekeyed with narrowed
// selectors (RFC 4301 section 4.4.1, RFC 7296 section 2.9).
func CheckChildSA(rules []policy.Rule, labels func(string) (uint32, bool), tsi, tsr Selectors, sa string) (Rekey, error) {
	if err := validate(tsi, tsr); err != nil {
		return Rekey{}, err
	}
	labelID, labelled := uint32(0), tsi.Label != ""
	if labelled {
		id, ok := labels(tsi.Label)
		if !ok {
			return Rekey{Needed: true, Lost: []string{"(label " + tsi.Label + " no longer in policy)"}}, nil
		}
		labelID = id
	}
	var out Rekey
	lost := map[string]bool{}
	best, bestVol := policy.Box{}, -1.0
	for _, r := range tsr.TS {
		for _, i := range tsi.TS {
			b, ok := pairBox(r, i, labelID, labelled)
			if !ok {
				continue
			}
			rs, err := regions(rules, b)
			if err != nil {
				return Rekey{}, fmt.Errorf("ikets: check child SA: %w", err)
			}
			covered := make([]policy.Box, 0, len(rs))
			for _, rg := range rs {
				covered = append(covered, rg.box)
				rule := &rules[rg.rule]
				if rule.Action != policy.ActionProtect || rule.SA != sa {
					out.Needed = true
					if !lost[rule.Name] {
						lost[rule.Name] = true
						out.Lost = append(out.Lost, rule.Name)
					}
					continue
				}
				if _, _, ok := boxTS(rg.box, 0); ok {
					if v := rg.box.Log2Volume(); v > bestVol {
						best, bestVol = rg.box, v
					}
				}
			}
			// Traffic no rule matches any more is lost too.
			if rest, err := policy.Subtract(b, covered, pieceLimit); err == nil && len(rest) > 0 {
				out.Needed = true
				if !lost[""] {
					lost[""] = true
					out.Lost = append(out.Lost, "(no rule)")
				}
			}
		}
	}
	if out.Needed && bestVol >= 0 {
		local, remote, _ := boxTS(best, 0)
		out.TSi = Selectors{TS: []TS{remote}, Label: tsi.Label}
		out.TSr = Selectors{TS: []TS{local}, Label: tsr.Label}
	}
	return out, nil
}
