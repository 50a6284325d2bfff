package ikeservice

import (
	"fmt"

	"github.com/espy-dpi/espy/ike"
	"github.com/espy-dpi/espy/ike/message"
	"github.com/espy-dpi/espy/policy"
	"github.com/espy-dpi/espy/policy/ikets"
)

// protects reports whether a PROTECT rule of pol names the tunnel: then the
// SPD, not the tunnel's local_ts and remote_ts, decides its selectors.
func protects(pol *policy.Policy, name string) bool {
	if pol == nil {
		return false
	}
	for i := range pol.Rules {
		if pol.Rules[i].Action == policy.ActionProtect && pol.Rules[i].SA == name {
			return true
		}
	}
	return false
}

// spdNarrower returns the responder's narrowing for the tunnel named name
// through the service's current SPD (RFC 7296 2.9, policy/ikets.Narrow).
// It reads the SPD on every proposal, so a reload applies to the next
// exchange. While no PROTECT rule names the tunnel it answers
// ike.ErrDefaultNarrowing: the tunnel's own local_ts and remote_ts decide.
// A proposal whose traffic the SPD protects with another tunnel, or does
// not protect, is TS_UNACCEPTABLE.
func (s *Service) spdNarrower(name string) func(tsi, tsr []message.Selector) ([]message.Selector, []message.Selector, error) {
	return func(tsi, tsr []message.Selector) ([]message.Selector, []message.Selector, error) {
		pol := s.spd.Load()
		if !protects(pol, name) {
			return nil, nil, ike.ErrDefaultNarrowing
		}
		res, err := ikets.Narrow(pol.Rules, pol.LabelID, toIkets(tsi), toIkets(tsr))
		if err != nil {
			return nil, nil, fmt.Errorf("ikeservice: tunnel %s: %w", name, err)
		}
		if res.SA != name {
			return nil, nil, fmt.Errorf("ikeservice: tunnel %s: the SPD protects this traffic with %q (rule %s): %w", name, res.SA, res.Rule, ikets.ErrUnacceptable)
		}
		return fromIkets(res.TSi), fromIkets(res.TSr), nil
	}
}

// proposal returns the selectors the tunnel initiates with (TSi local, TSr
// remote): while a PROTECT rule names it, the part of local_ts × remote_ts
// (anything when unset) the SPD routes to it (ikets.Propose); otherwise
// local_ts and remote_ts as configured. The SA is never triggered by a
// packet, so no first selector describes one (RFC 7296 2.9).
func (t *tunnel) proposal() (local, remote []message.Selector, fromSPD bool, err error) {
	pol := t.s.spd.Load()
	if !protects(pol, t.spec.Name) {
		return t.cfg.LocalTS, t.cfg.RemoteTS, false, nil
	}
	l, r := ikets.AnyTS(), ikets.AnyTS()
	if len(t.cfg.LocalTS) > 0 {
		l = toIkets(t.cfg.LocalTS)
	}
	if len(t.cfg.RemoteTS) > 0 {
		r = toIkets(t.cfg.RemoteTS)
	}
	res, err := ikets.Propose(pol.Rules, pol.LabelID, l, r, t.spec.Name)
	if err != nil {
		return nil, nil, true, fmt.Errorf("ikeservice: tunnel %s: selectors from the SPD: %w", t.spec.Name, err)
	}
	return fromIkets(res.TSi), fromIkets(res.TSr), true, nil
}

func toIkets(ss []message.Selector) ikets.Selectors {
	var out ikets.Selectors
	for _, s := range ss {
		out.TS = append(out.TS, ikets.TS{Type: ikets.Type(s.TSType), Protocol: s.IPProto,
			StartPort: s.StartPort, EndPort: s.EndPort, Start: s.StartAddr, End: s.EndAddr})
	}
	return out
}

func fromIkets(s ikets.Selectors) []message.Selector {
	var out []message.Selector
	for _, t := range s.TS {
		out = append(out, message.Selector{TSType: message.TSType(t.Type), IPProto: t.Protocol,
			StartPort: t.StartPort, EndPort: t.EndPort, StartAddr: t.Start, EndAddr: t.End})
	}
	return out
}
